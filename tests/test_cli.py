"""The command line's start-up: each command imports only what it uses (the figures are in
bench/bench_startup.py), and a missing optional package is one line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from build_helpers import cli_env, new_project

from wvwasi.packager.cli import COMMANDS, main, missing_module

HEAVY = ("wasmtime", "aiohttp", "PyInstaller", "rich", "PIL", "watchfiles", "webview", "gi",
         "tomli_w", "importlib.metadata")
PROBE = """
import json, sys
from wvwasi.packager.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


def loaded_after(*args: str | Path, stdin: str = "") -> list[str]:
    """The heavy modules a `wvwasi ARGS` process has imported when the command returns."""
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *map(str, args)],
                          input=stdin, capture_output=True, text=True, env=cli_env(),
                          timeout=120)
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_project(tmp_path_factory.mktemp("cli"), "Cli Probe")


def test_help_and_check_import_no_heavy_library(project: Path):
    assert loaded_after("--help") == []
    assert loaded_after("check", "--help") == []
    # check validates each module with wasmtime (what a compile would check): nothing else
    assert set(loaded_after("check", project)) == {"wasmtime", "importlib.metadata"}


def test_exec_imports_wasmtime_only_when_it_runs(project: Path):
    assert loaded_after("exec", "--help") == []
    loaded = loaded_after("exec", "greet", "--project", project, stdin="Ada")
    assert "wasmtime" in loaded
    assert set(loaded) <= {"wasmtime", "importlib.metadata"}  # no bridge, window, packager


def test_every_command_help_shows_an_example(capsys: pytest.CaptureFixture[str]):
    for command, example in COMMANDS.items():
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"example: {example}" in capsys.readouterr().out


def test_a_missing_module_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]):
    import wvwasi.packager.commands.info as info

    def missing(_args: object) -> int:
        raise ModuleNotFoundError("No module named 'qtpy'", name="qtpy")

    monkeypatch.setattr(info, "run", missing)
    assert main(["info"]) == 1
    assert capsys.readouterr().err == "error: this needs qtpy, which is not installed: " \
        "pip install 'wvwasi[qt]'\n"
    assert missing_module("gi.repository") == ("error: this needs gi, which is not installed: "
                                               "pip install 'wvwasi[gtk]'")
    assert "pip install --force-reinstall wvwasi" in missing_module("aiohttp")

"""Every `wvwasi new --template`: created with its service built, checked, built into a `dir`
app whose frozen `--self-test` passes the template's own page checks (real toolchains: clang,
Debian's rustc for wasm32-wasi, and Boolector's WASI build downloaded from PyPI)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from build_helpers import cli_env, new_project, self_test, wvwasi
from xvfb import xvfb

from wvwasi.packager.commands.new import template_info, templates

#: Template -> the page's self-test checks it must pass (`wvwasiSelfTest` in its ui/app.js).
CHECKS = {
    "c": {"greet": "Hello, wvwasi!"},
    "rust": {"count": json.dumps([{"words": 3, "chars": 16, "total": 3},
                                  {"words": 2, "chars": 10, "total": 5}], separators=(",", ":"))},
    "cli": {"resources": "sat\n((x #b00000111))\nunsat\n", "files": "unsat\n"},
}


@pytest.fixture(scope="module")
def display() -> Any:
    with xvfb() as value:
        yield value


def test_every_template_is_covered():
    assert sorted(CHECKS) == templates()


@pytest.mark.parametrize("template", sorted(CHECKS))
def test_template_builds_checks_and_passes_its_self_test(template: str, tmp_path: Path,
                                                         display: str):
    project = new_project(tmp_path, f"Tmpl {template}", "", None, "--template", template)
    manifest_text = (project / "wvwasi.toml").read_text()
    assert "{{" not in manifest_text and not (project / "template.toml").exists()
    assert list((project / "build").glob("*.wasm")), "`new` builds the service"
    check = wvwasi("check", project)
    assert check.returncode == 0, check.stderr
    proc = wvwasi("build", project, "--format", "dir", "--json", env=cli_env())
    assert proc.returncode == 0, proc.stderr
    (app_dir,) = [Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]]
    status, report = self_test(app_dir / f"tmpl-{template}", display)
    assert status == 0 and report["ok"], report
    expected = {name: {"ok": True, "detail": detail} for name, detail in CHECKS[template].items()}
    assert report["app_checks"] == expected


def test_missing_toolchain_names_the_packages(tmp_path: Path):
    """Without clang the project is still created; `new` says which packages to install."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "mkdir"):
        os.symlink(f"/usr/bin/{tool}", bin_dir / tool)
    proc = wvwasi("new", "No Tools", "--dir", tmp_path, env=cli_env(PATH=str(bin_dir)))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "no-tools" / "wvwasi.toml").is_file()
    assert "Traceback" not in proc.stderr
    warning = proc.stderr.strip().splitlines()[-1]
    assert warning == (
        "warning: services greet not built. Their build.command needs (Debian/Ubuntu): "
        f"apt-get install {template_info('c')['packages']}; `wvwasi dev` and `wvwasi build` "
        "run it again.")

"""`wvwasi exec`: the real command line running a bare .wasm or a project's service, with the
terminal's stdin/stdout as the service's."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def xdg(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Private app folders for the subprocesses (their compile cache is shared by this module)."""
    base = tmp_path_factory.mktemp("exec-home")
    return {
        "XDG_CACHE_HOME": str(base / "cache"),
        "XDG_DATA_HOME": str(base / "data"),
        "HOME": str(base),
    }


@pytest.fixture
def wvwasi(xdg: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """`wvwasi("exec", ..., input=b"...")` -> the finished process (stdout/stderr as bytes)."""

    def run(*args: str | Path, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "wvwasi", *map(str, args)],
            input=input,
            capture_output=True,
            timeout=120,
            env={**os.environ, **xdg},
        )

    return run


def test_bare_wasm_reads_stdin_and_writes_stdout(
    wvwasi: Callable[..., Any], wasm_fixture: Callable[[str], Path]
) -> None:
    proc = wvwasi("exec", wasm_fixture("wc"), input=b"one two\nthree\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"2 3 14\n", b"")


def test_service_exiting_while_stdin_is_still_open(
    xdg: dict[str, str], wasm_fixture: Callable[[str], Path]
) -> None:
    """A terminal's stdin stays open: the service's own exit must end the command cleanly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wvwasi", "exec", str(wasm_fixture("exit3"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **xdg},
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        status = proc.wait(timeout=120)
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
    assert (status, out) == (3, b"exiting with 3\n"), err.decode()


def test_binary_stdio_passes_through_unchanged(
    wvwasi: Callable[..., Any], wasm_fixture: Callable[[str], Path]
) -> None:
    data = bytes(range(256)) * 4096 + os.urandom(999)
    proc = wvwasi("exec", wasm_fixture("echo_stream"), input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data


def test_args_after_double_dash_and_env(
    wvwasi: Callable[..., Any], wasm_fixture: Callable[[str], Path]
) -> None:
    proc = wvwasi(
        "exec", "--env", "GREETING=hi there", wasm_fixture("env_args"), "--", "-v", "x y", "--"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[1:] == ["arg[1]=-v", "arg[2]=x y", "arg[3]=--", "env:GREETING=hi there"]


def test_exit_code_and_trap_status(
    wvwasi: Callable[..., Any], wasm_fixture: Callable[[str], Path]
) -> None:
    proc = wvwasi("exec", wasm_fixture("exit3"))
    assert (proc.returncode, proc.stdout) == (3, b"exiting with 3\n")
    proc = wvwasi("exec", wasm_fixture("trap"))
    assert proc.returncode == 134
    assert b"error:" in proc.stderr and b"unreachable" in proc.stderr


def test_dir_preopens_rw_and_ro(
    wvwasi: Callable[..., Any], wasm_fixture: Callable[[str], Path], tmp_path: Path
) -> None:
    proc = wvwasi(
        "exec", "--dir", f"{tmp_path}::/data", wasm_fixture("write_rw"), "--", "/data/f.txt", "hi"
    )
    assert (proc.returncode, proc.stdout) == (0, b"hi"), proc.stderr
    assert (tmp_path / "f.txt").read_text() == "hi"
    proc = wvwasi(
        "exec", "--dir", f"{tmp_path}::/data:ro", wasm_fixture("write_ro"), "--", "/data/g.txt"
    )
    assert proc.stdout.decode().split(": ")[1].strip() in {"EROFS", "EACCES", "EPERM"}
    assert not (tmp_path / "g.txt").exists()


def test_project_service_keeps_its_manifest(
    wvwasi: Callable[..., Any], make_project: Callable[..., Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "note.txt").write_text("from the manifest's preopen\n")
    project = make_project(
        {
            "cat": {
                "source": "readfile",
                "args": ["/notes/note.txt"],
                "preopens": [{"guest": "/notes", "host": str(data)}],
            },
            "spin": {"source": "loop", "limits": {"timeout": "300ms"}},
        }
    )
    proc = wvwasi("exec", "--project", project, "cat")
    assert (proc.returncode, proc.stdout) == (0, b"from the manifest's preopen\n"), proc.stderr
    proc = wvwasi("exec", "--project", project, "spin")
    assert proc.returncode == 124
    assert b"limits.timeout" in proc.stderr
    proc = wvwasi("exec", "--project", project, "nope")
    assert proc.returncode == 2
    assert b"cat" in proc.stderr and b"spin" in proc.stderr


def test_bad_input_is_a_clear_error(wvwasi: Callable[..., Any], tmp_path: Path) -> None:
    fake = tmp_path / "fake.wasm"
    fake.write_text("not wasm")
    proc = wvwasi("exec", fake)
    assert proc.returncode == 2
    assert str(fake).encode() in proc.stderr and b"not a WebAssembly module" in proc.stderr
    proc = wvwasi("exec", "--dir", f"{tmp_path}/missing::/x", fake)
    assert proc.returncode == 2 and b"missing" in proc.stderr

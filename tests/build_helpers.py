"""Helpers for the `wvwasi build` tests: run the CLI, make projects, run built apps' self-test.

Every build test shares one runtime cache (tests/.fixtures/wvwasi-cache), so PyInstaller runs at
most once per machine and runtime version, whichever test needs it first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).resolve().parent / ".fixtures" / "wvwasi-cache"
SDE = "1700000000"


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for `wvwasi` runs: the shared cache, plus `extra`."""
    return {**os.environ, "WVWASI_CACHE_DIR": str(CACHE), **extra}


def wvwasi(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m wvwasi ARGS` and return the finished process (never raises on failure)."""
    return subprocess.run(
        [sys.executable, "-m", "wvwasi", *map(str, args)], cwd=cwd, env=env or cli_env(),
        capture_output=True, text=True, timeout=timeout,
    )


def new_project(parent: Path, name: str, extra_toml: str = "",
                identifier: str | None = None, *options: str) -> Path:
    """A `wvwasi new` project in `parent`, with `extra_toml` appended to its wvwasi.toml
    (`options`: more `wvwasi new` arguments)."""
    args = ["new", name, "--dir", parent, *options]
    if identifier:
        args += ["--identifier", identifier]
    proc = wvwasi(*args)
    assert proc.returncode == 0, proc.stderr
    project = parent / proc.stdout.split()[1].split("/")[-1]
    if extra_toml:
        with open(project / "wvwasi.toml", "a", encoding="utf-8") as f:
            f.write("\n" + extra_toml)
    return project


def self_test(executable: Path | str, display: str, timeout: float = 90) -> tuple[int, Any]:
    """Run a built app with `--self-test` on `display`: (exit status, the JSON report)."""
    proc = subprocess.run(
        [str(executable), "--self-test"], env={**os.environ, "DISPLAY": display},
        capture_output=True, text=True, timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {"stdout": proc.stdout, "stderr": proc.stderr}
    return proc.returncode, report


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one `error:` line a failed command printed (asserting there is exactly one, last)."""
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    return errors[0]


def files_under(top: Path) -> set[str]:
    """Relative paths of every file and symlink under `top`."""
    return {p.relative_to(top).as_posix() for p in top.rglob("*") if not p.is_dir()
            or p.is_symlink()}


def module_id(payload: Path, service: str) -> str:
    """The content name (`<sha256[:16]>`, without `.wasm`) a built payload ships `service`'s
    module under: services/<id>.wasm(.gz), precompiled/<id>.cwasm."""
    from wvwasi.runtime.manifest import load_manifest

    return load_manifest(payload, platform="linux").services[service].source.stem

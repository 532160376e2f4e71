"""The codebase stays ruff-clean (configuration in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runtime_never_imports_the_packager() -> None:
    """runtime/ ships inside every app: no packager, no PyInstaller."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "runtime").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if line.lstrip().startswith(("import ", "from "))
        and ("packager" in line or "PyInstaller" in line)
    ]
    assert offenders == []

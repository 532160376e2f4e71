"""The exact versions wvwasi is tested with: `wvwasi/constraints.txt`, the repo's lock file.

The published metadata allows compatible ranges (pyproject.toml); CI installs with
`pip install -c wvwasi/constraints.txt ...`, and `wvwasi build` notes every library it freezes
into an app whose installed version differs from the lock (the frozen runtime is reproducible
when the build machine installed wvwasi with the same constraints).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable
from pathlib import Path

import wvwasi

LOCK_FILE = Path(wvwasi.__file__).resolve().parent / "constraints.txt"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(path: Path = LOCK_FILE) -> dict[str, str]:
    """Distribution name (normalized) -> pinned version, from `name==version` lines."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*(?:[;#].*)?", line)
        if m:
            pins[_normalize(m[1])] = m[2]
    return pins


def drift(dists: Iterable[str], path: Path = LOCK_FILE) -> list[str]:
    """`"name installed (lock: pinned)"` for each installed distribution in `dists` whose
    version differs from the lock file's pin."""
    pins = locked_versions(path)
    out = []
    for name in dists:
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        want = pins.get(_normalize(name))
        if want is not None and want != have:
            out.append(f"{name} {have} (lock: {want})")
    return out

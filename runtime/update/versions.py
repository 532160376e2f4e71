"""Comparing app versions (`1.2.3`, `1.2.3-beta.1`, `1.2`), as semver orders them."""

from __future__ import annotations

import re

_VERSION = re.compile(r"v?(\d+(?:\.\d+){0,2})(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?\Z")

Key = tuple[tuple[int, ...], int, tuple[tuple[int, int | str], ...]]


def version_key(version: str) -> Key:
    """A sort key: numbers, then a release after its pre-releases, pre-release identifiers
    numeric before alphanumeric; ValueError for what is not a version."""
    m = _VERSION.match(version.strip()) if isinstance(version, str) else None
    if not m:
        raise ValueError(f"expected a version like \"1.2.3\", got {version!r}")
    numbers = tuple(int(n) for n in m[1].split("."))
    numbers += (0,) * (3 - len(numbers))
    pre = m[2]
    if pre is None:
        return numbers, 1, ()
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return numbers, 0, parts  # type: ignore[return-value]


def is_newer(candidate: str, current: str) -> bool:
    """Whether `candidate` is a later version than `current`."""
    return version_key(candidate) > version_key(current)


def package_version(version: str) -> str:
    """`version` for deb/rpm: a pre-release `-beta.1` sorts before the release as `~beta.1`."""
    return version.replace("-", "~", 1)

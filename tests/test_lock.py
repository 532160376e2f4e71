"""The lock file (wvwasi/constraints.txt) against pyproject.toml's published ranges, and the
drift `wvwasi build` notes before freezing."""

from __future__ import annotations

from pathlib import Path

import tomllib
from build_helpers import ROOT
from packaging.requirements import Requirement

from wvwasi.packager import freeze, lock


def test_every_published_requirement_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in project["optional-dependencies"].values()
                     for r in extra]
    pins = lock.locked_versions()
    for req in requirements:
        assert not [s for s in req.specifier if s.operator == "=="], f"{req}: a range, not a pin"
        version = pins.get(req.name.lower().replace("_", "-"))
        assert version is not None, f"{req.name} has no pin in {lock.LOCK_FILE}"
        assert req.specifier.contains(version), f"{req.name}=={version} is outside {req}"


def test_ci_venv_has_the_locked_versions_of_what_it_freezes():
    assert lock.drift(freeze.bundled_dists("gtk")) == []
    assert lock.drift(freeze.bundled_dists("qt")) == []


def test_drift_names_installed_versions_that_differ(tmp_path: Path):
    other = tmp_path / "constraints.txt"
    other.write_text("# comment\nwasmtime==0.0.1\naiohttp == 3.14.5 ; python_version > '3'\n"
                     "not-installed-here==1.0\n")
    assert lock.locked_versions(other) == {"wasmtime": "0.0.1", "aiohttp": "3.14.5",
                                           "not-installed-here": "1.0"}
    from importlib.metadata import version
    assert lock.drift(["wasmtime", "aiohttp", "not-installed-here"], other) == [
        f"wasmtime {version('wasmtime')} (lock: 0.0.1)"]

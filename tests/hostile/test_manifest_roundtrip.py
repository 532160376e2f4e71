"""dump_manifest() is load_manifest()'s inverse: for every valid manifest and every target,
load(dump(m)) == m. The generator covers every field of the schema (manifest_strategies.py),
so a key the writer forgets, or one the generator lacks, fails here."""

from __future__ import annotations

from pathlib import Path

import hypothesis_profiles  # noqa: F401  (loads the ci/long profile)
import pytest
import tomli_w
from hostile_project import make_hostile_project
from hypothesis import given
from hypothesis import strategies as st
from manifest_strategies import LEAVES, manifest_tables, valid_manifests

from wvwasi.runtime.manifest import TARGETS, dump_manifest, load_manifest


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hostile_project(tmp_path_factory.mktemp("roundtrip") / "proj")


def test_the_generator_covers_every_field_and_no_other() -> None:
    used: set[str] = set()
    manifest_tables(used)  # MissingLeaf for a field without a strategy
    assert used == set(LEAVES)


@pytest.mark.timeout(900)
@given(tables=valid_manifests(), target=st.sampled_from(TARGETS))
def test_load_dump_load_is_equal_for_any_target(project: Path, tables: dict, target: str) -> None:
    file = project / "wvwasi.toml"
    file.write_text(tomli_w.dumps(tables), encoding="utf-8")
    loaded = load_manifest(project, platform=target)
    file.write_text(dump_manifest(loaded), encoding="utf-8")
    assert load_manifest(project, platform=target) == loaded


def test_the_written_text_is_for_one_target_only(project: Path) -> None:
    (project / "wvwasi.toml").write_text(
        'app = { name = "A", identifier = "dev.a.b" }\n'
        "[limits]\ninstances = 7\n"
        '[target.linux]\nwebview = "qt"\nlimits = { instances_per_page = 3 }\n'
        "[target.windows.limits]\ninstances = 9\n", encoding="utf-8")
    text = dump_manifest(load_manifest(project, platform="linux"))
    assert "[target.windows" not in text
    assert '[target.linux]\nwebview = "qt"' in text
    assert "instances = 7\ninstances_per_page = 3\n" in text
    windows = dump_manifest(load_manifest(project, platform="windows"))
    assert "[target" not in windows and "instances = 9\n" in windows

"""Property-based fuzzing of load_manifest() and `wvwasi check`'s in-process check_project().

Documents are a valid manifest with 1-3 keys replaced by hostile values (wrong types, nested
tables, huge and negative numbers, NaN, unicode, NUL, control characters, paths to a FIFO, a
symlink loop, /dev/zero, a directory), or valid TOML text with bytes spliced in. Whatever the
input: either a Manifest that dump_manifest() writes back equal, or a ManifestError whose
one-line text starts with the file's path — never another exception, never a hang. Long
run: see hypothesis_profiles.py.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import hypothesis_profiles  # noqa: F401  (loads the ci/long profile)
import pytest
import tomli_w
from hostile_project import TRAPS, make_hostile_project, valid_tables
from hypothesis import given
from hypothesis import strategies as st

from wvwasi.packager.commands.check import check_project
from wvwasi.runtime.manifest import PLATFORMS, ManifestError, dump_manifest, load_manifest

HOSTILE_STRINGS = [
    *TRAPS.values(), "", ".", "..", "../../etc/passwd", "/etc/passwd", "/dev/zero", "a\0b",
    "x" * 300, "é✓\u202e.wasm", "$APPDATA", "$NOPE/x", "$APPDATA/../..", "//data", "/data/../x",
    "64MiB", "0B", "9" * 400 + "MiB", "1.5e3MiB", "-1s", "9" * 400 + "s", "nan", "inf",
    "500ms", "1h", "frames", "background", "gtk", "qt", "deb", "dir", "ro", "rw", "\n", "\t\r",
]
scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(HOSTILE_STRINGS),
    st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 1, 1)),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(HOSTILE_STRINGS)), inner,
                      max_size=3),
    max_leaves=6,
)


def _key_paths(table: dict, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for key, value in table.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += _key_paths(value, (*prefix, key))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            paths += _key_paths(value[0], (*prefix, key, 0))
    return paths


KEY_PATHS = _key_paths(valid_tables())
#: Keys naming files or numbers, where the traps bite: drawn as often as all others together.
TRAP_KEYS = [p for p in KEY_PATHS if p[-1] in (
    "icon", "dir", "entry", "source", "resources", "host", "guest", "workdir", "watch", "width",
    "memory", "timeout", "instances", "args", "env")]
key_paths = st.one_of(
    st.sampled_from(KEY_PATHS),
    st.sampled_from(TRAP_KEYS),
    st.tuples(st.sampled_from(KEY_PATHS), st.text(max_size=8)).map(lambda t: (*t[0], t[1])),
    st.tuples(st.sampled_from(["app", "services", "target", "bundle", "zzz"]),
              st.sampled_from(["svc", "linux", "", "Bad Name", "x\0", "windows"])),
)


def _set(tables: dict, path: tuple, value: Any) -> None:
    """Set `path` (keys, and 0 for an array's first table) to `value`, making tables on the way."""
    node: Any = tables
    for part in path[:-1]:
        if isinstance(part, int):
            if not (isinstance(node, list) and node and isinstance(node[0], dict)):
                return
            node = node[0]
        else:
            if not isinstance(node, dict):
                return
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
    if isinstance(node, dict) and not isinstance(path[-1], int):
        node[path[-1]] = value


def _toml(tables: dict) -> str | None:
    try:
        return tomli_w.dumps(tables)
    except (TypeError, ValueError):  # a shape TOML cannot spell (e.g. a 400-digit integer)
        return None


@st.composite
def manifest_texts(draw: st.DrawFn) -> str:
    tables = valid_tables()
    hostile = st.one_of(st.sampled_from(HOSTILE_STRINGS), values)  # half the time a trap
    for path, value in draw(st.lists(st.tuples(key_paths, hostile), min_size=1, max_size=3)):
        _set(tables, path, value)
    text = _toml(tables)
    if text is None:
        text = _toml(valid_tables()) + f"zzz = {10**400}\n"
    if draw(st.integers(0, 9)) == 0:  # splice raw bytes into the text
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=8)) + text[at:]
    return text


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hostile_project(tmp_path_factory.mktemp("hostile") / "proj")


def assert_loads_or_names_file(root: Path) -> None:
    """load_manifest for every platform: a Manifest that dump_manifest() writes back equal, or
    one ManifestError line naming the file."""
    file = root / "wvwasi.toml"
    for platform in PLATFORMS:
        try:
            manifest = load_manifest(root, platform=platform)
        except ManifestError as e:
            text = str(e)
            assert text.startswith(f"{file}: "), text
            assert "\n" not in text and "\r" not in text, text
            continue
        source = file.read_bytes()
        file.write_text(dump_manifest(manifest), encoding="utf-8")
        try:
            assert load_manifest(root, platform=platform) == manifest
        finally:
            file.write_bytes(source)


def assert_check_lines(root: Path) -> None:
    """check_project: every problem is one line naming the file."""
    manifests, problems = check_project(root)
    for problem in problems:
        assert problem.startswith(f"{root / 'wvwasi.toml'}: "), problem
        assert "\n" not in problem, problem
    assert manifests or problems


def test_the_unmutated_manifest_is_valid(project: Path) -> None:
    (project / "wvwasi.toml").write_text(tomli_w.dumps(valid_tables()))
    assert_loads_or_names_file(project)
    manifests, problems = check_project(project)
    assert (len(manifests), problems) == (3, [])


@pytest.mark.timeout(900)
@given(text=manifest_texts())
def test_fuzzed_manifests_load_or_name_file_and_key(project: Path, text: str) -> None:
    (project / "wvwasi.toml").write_text(text, encoding="utf-8", errors="surrogatepass")
    assert_loads_or_names_file(project)
    assert_check_lines(project)


@pytest.mark.timeout(900)
@given(data=st.binary(max_size=64), at=st.integers(0, 2000))
def test_fuzzed_bytes_in_the_manifest_file(project: Path, data: bytes, at: int) -> None:
    good = tomli_w.dumps(valid_tables()).encode()
    (project / "wvwasi.toml").write_bytes(good[:at] + data + good[at:])
    assert_loads_or_names_file(project)
    assert_check_lines(project)

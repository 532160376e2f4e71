"""runtime/paths.py: host path variables resolve to the right folders, created when they should."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from wvwasi.runtime.manifest import manifest_for_wasm
from wvwasi.runtime.paths import VARIABLES, PathContext, parse_host

IDENT = "com.example.paths"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake user: HOME and the XDG roots under tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for var in ("XDG_DOCUMENTS_DIR", "XDG_DOWNLOAD_DIR", "SUDO_USER"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def ctx(tmp_path: Path, home: Path):
    root = tmp_path / "project"
    root.mkdir()
    with PathContext(root, IDENT) as c:
        yield c


def test_appdata_and_cache_follow_xdg_and_are_created_on_first_use(
    ctx: PathContext, tmp_path: Path
) -> None:
    appdata = tmp_path / "xdg-data" / IDENT
    cache = tmp_path / "xdg-cache" / IDENT
    assert not appdata.exists() and not cache.exists()
    assert ctx.resolve("$APPDATA") == appdata and appdata.is_dir()
    assert ctx.resolve("$APPDATA/notes/2024") == appdata / "notes" / "2024"
    assert (appdata / "notes" / "2024").is_dir()
    assert not cache.exists()
    assert ctx.cache_dir == cache and cache.is_dir()
    assert ctx.resolve("$CACHE\\modules") == cache / "modules"  # Windows separators accepted


def test_user_folders_resolve_without_being_created(ctx: PathContext, home: Path) -> None:
    assert ctx.resolve("$HOME") == home
    assert ctx.resolve("$HOME/photos") == home / "photos"
    assert ctx.resolve("$DOCUMENTS") == home / "Documents"
    assert ctx.resolve("$DOWNLOADS/x.bin") == home / "Downloads" / "x.bin"
    assert sorted(p.name for p in home.iterdir()) == []


def test_user_dirs_config_is_honoured(tmp_path: Path, home: Path) -> None:
    docs = tmp_path / "Dokumente"
    (tmp_path / "xdg-config").mkdir()
    (tmp_path / "xdg-config" / "user-dirs.dirs").write_text(f'XDG_DOCUMENTS_DIR="{docs}"\n')
    assert PathContext(tmp_path, IDENT).resolve("$DOCUMENTS/a") == docs / "a"


def test_resources_is_the_project_root_unless_given(tmp_path: Path, home: Path) -> None:
    root = tmp_path / "project"
    assert PathContext(root, IDENT).resolve("$RESOURCES/presets") == root / "presets"
    shipped = tmp_path / "shipped"
    built = PathContext(root, IDENT, resources=shipped)
    assert built.resolve("$RESOURCES") == shipped
    # relative hosts and files are beneath $RESOURCES too: the shipped copy in a built app
    assert built.resolve("presets") == shipped / "presets" == built.resolve("$RESOURCES/presets")
    assert built.resolve_file("ca.pem") == shipped / "ca.pem"
    assert built.locate("presets/a") == (shipped, "presets/a", False, True)


def test_plain_hosts(ctx: PathContext, tmp_path: Path) -> None:
    assert ctx.resolve("data") == tmp_path / "project" / "data"
    assert ctx.resolve("../shared").resolve() == tmp_path / "shared"
    assert ctx.resolve("/srv/x") == Path("/srv/x")


def test_temp_is_per_run_lazy_and_removed_on_close(tmp_path: Path, home: Path) -> None:
    ctx = PathContext(tmp_path, IDENT)
    temp = ctx.resolve("$TEMP")
    assert temp.is_dir() and IDENT in temp.name
    assert ctx.resolve("$TEMP/work") == temp / "work" and (temp / "work").is_dir()
    (temp / "work" / "f.txt").write_text("x")
    other = PathContext(tmp_path, IDENT)
    assert other.resolve("$TEMP") != temp  # each run (context) has its own
    other.close()
    ctx.close()
    assert not temp.exists()
    ctx.close()  # idempotent
    assert ctx.resolve("$TEMP") != temp  # a later use starts a fresh one
    ctx.close()


def test_close_without_temp_creates_nothing(tmp_path: Path, home: Path) -> None:
    before = set(Path(tempfile.gettempdir()).glob(f"wvwasi-{IDENT}-*"))
    PathContext(tmp_path, IDENT).close()
    assert set(Path(tempfile.gettempdir()).glob(f"wvwasi-{IDENT}-*")) == before


def test_for_app_and_base_dir_overrides(tmp_path: Path, home: Path) -> None:
    m = manifest_for_wasm(tmp_path / "tool.wasm")
    ctx = PathContext.for_app(m, base_dirs={"APPDATA": tmp_path / "ad", "HOME": tmp_path / "h"})
    assert ctx.resources == tmp_path and ctx.identifier == m.app.identifier
    assert ctx.resolve("$APPDATA/db") == tmp_path / "ad" / "db" and (tmp_path / "ad/db").is_dir()
    assert ctx.resolve("$HOME") == tmp_path / "h"
    assert ctx.cache_dir == tmp_path / "xdg-cache" / m.app.identifier
    with pytest.raises(ValueError, match="unknown path variables"):
        PathContext.for_app(m, base_dirs={"APPDAT": tmp_path})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("$FOO/x", 'unknown variable "$FOO" (known: $APPDATA, $CACHE'),
        ("$appdata", 'unknown variable "$appdata"'),
        ("data/$APPDATA", "expected a variable only at the start of the path"),
        ("$APPDATA/../etc", 'expected a path inside $APPDATA without ".."'),
        ("$", 'expected "$NAME" or "$NAME/path", got "$"'),
        ("$APPDATA-x", 'expected "$NAME" or "$NAME/path"'),
    ],
)
def test_bad_variables(ctx: PathContext, raw: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        ctx.resolve(raw)
    assert message in str(info.value)


def test_parse_host_and_variables() -> None:
    assert VARIABLES == ("APPDATA", "CACHE", "DOCUMENTS", "DOWNLOADS", "HOME", "TEMP",
                         "RESOURCES")
    assert parse_host("$APPDATA/a/b/") == ("APPDATA", "a/b")
    assert parse_host("$TEMP") == ("TEMP", "")
    assert parse_host("rel/dir") == (None, "rel/dir")
    assert parse_host("C:\\Data") == (None, "C:\\Data")

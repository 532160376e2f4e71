"""runtime/manifest.py: every broken manifest names the file and key; good ones load typed."""

from __future__ import annotations

import re
from dataclasses import FrozenInstanceError
from pathlib import Path
from types import MappingProxyType

import pytest

from wvwasi.runtime.manifest import (
    MENU_LABEL,
    PNG_MAGIC,
    BuildStep,
    FileAssociation,
    Limits,
    ManifestError,
    MenuItem,
    Preopen,
    load_manifest,
    manifest_file,
    manifest_for_wasm,
    parse_duration,
    parse_menu,
    parse_size,
)

DOCS = Path(__file__).parent.parent / "docs" / "manifest.md"
APP = '[app]\nname = "Demo"\nidentifier = "com.example.demo"\n'
WC = APP + '[services.wc]\nsource = "wc.wasm"\n'


def write(root: Path, text: str, files: dict[str, bytes] | None = None) -> Path:
    """A project folder with `text` as wvwasi.toml and ui/index.html."""
    (root / "ui").mkdir(parents=True, exist_ok=True)
    (root / "ui" / "index.html").write_text("<p>hi</p>")
    for name, data in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "wvwasi.toml").write_text(text)
    return root


# (key path, expected message after "<file>: <key>: ", manifest text[, extra files])
BROKEN: list[tuple[str, str, str] | tuple[str, str, str, dict[str, bytes]]] = [
    ("app", "missing required key", "[window]\nwidth = 10\n"),
    ("app.name", "missing required key", '[app]\nidentifier = "com.example.demo"\n'),
    ("app.identifier", "missing required key", '[app]\nname = "Demo"\n'),
    ("app.nmae", 'unknown key (did you mean "name"?)', APP + 'nmae = "x"\n'),
    ("app.identifier", 'expected a reverse-DNS name like "com.example.app", got "demo"',
     '[app]\nname = "Demo"\nidentifier = "demo"\n'),
    ("app.identifier", "expected a string, got an integer",
     '[app]\nname = "Demo"\nidentifier = 5\n'),
    ("app.name", 'expected a non-empty string, got ""',
     '[app]\nname = ""\nidentifier = "com.example.demo"\n'),
    ("app.version", 'expected a version like "1.2.3", got "one"', APP + 'version = "one"\n'),
    ("app.icon", 'cannot read "icon.png"', APP + 'icon = "icon.png"\n'),
    ("app.icon", 'expected a PNG image, got "icon.jpg" which is not a PNG',
     APP + 'icon = "icon.jpg"\n', {"icon.jpg": b"\xff\xd8\xff\xe0 not a png"}),
    ("ui.dir", 'expected an existing folder, got "web"', APP + '[ui]\ndir = "web"\n'),
    ("ui.entry", 'expected a file in "ui", got "main.html"', APP + '[ui]\nentry = "main.html"\n'),
    ("window.width", "expected an integer, got a string", APP + '[window]\nwidth = "800"\n'),
    ("window.height", "expected an integer greater than 0, got 0", APP + "[window]\nheight = 0\n"),
    ("window.resizable", "expected a boolean, got a string",
     APP + '[window]\nresizable = "yes"\n'),
    ("window", "expected a table, got an integer", "window = 3\n" + APP),
    ("windows", 'unknown key (did you mean "window"?)', APP + "[windows]\nwidth = 1\n"),
    ("services", "expected a table, got an array", "services = []\n" + APP),
    ("services.wc.source", "missing required key", APP + '[services.wc]\nkind = "task"\n'),
    ("services.Wc", "expected a service name of lower-case letters",
     APP + '[services.Wc]\nsource = "a.wasm"\n'),
    ("services.wc.sorce", 'unknown key (did you mean "source"?)', WC + 'sorce = "x.wasm"\n'),
    ("services.wc.kind", 'expected "task", "dedicated" or "background", got "daemon"',
     WC + 'kind = "daemon"\n'),
    ("services.wc.ipc", 'expected "lines", "frames" or "stream", got "line" '
     '(did you mean "lines"?)', WC + 'ipc = "line"\n'),
    ("services.wc.args", "expected an array of strings, got a string", WC + 'args = "-v"\n'),
    ("services.wc.args[1]", "expected a string, got an integer", WC + 'args = ["-v", 1]\n'),
    ("services.wc.env.A", "expected a string, got an integer", WC + "env = { A = 1 }\n"),
    ('services.wc.env."A=B"', "expected a variable name without '='",
     WC + 'env = { "A=B" = "x" }\n'),
    ("services.wc.env", "expected a table, got an array", WC + 'env = ["A=1"]\n'),
    ("services.wc.preopens[0].mode", 'expected "ro" or "rw", got "rwx"',
     WC + 'preopens = [{ guest = "/d", host = "d", mode = "rwx" }]\n'),
    ("services.wc.preopens", "expected an array of tables, got a table",
     WC + '[services.wc.preopens]\nguest = "/d"\n'),
    ("services.wc.preopens[0]", "expected a table, got a string", WC + 'preopens = ["/d"]\n'),
    ("services.wc.preopens[0].guest", 'expected an absolute path without "..", got "data"',
     WC + 'preopens = [{ guest = "data", host = "d" }]\n'),
    ("services.wc.preopens[1].guest", 'expected an absolute path without "..", got "/a/../b"',
     WC + 'preopens = [{ guest = "/a", host = "a" }, { guest = "/a/../b", host = "b" }]\n'),
    ("services.wc.preopens[0].host", "missing required key",
     WC + 'preopens = [{ guest = "/d" }]\n'),
    ("services.wc.preopens[0].host", 'unknown variable "$FOO" (known: $APPDATA',
     WC + 'preopens = [{ guest = "/d", host = "$FOO/x" }]\n'),
    ("services.wc.preopens[0].host", "expected a variable only at the start of the path",
     WC + 'preopens = [{ guest = "/d", host = "data/$APPDATA" }]\n'),
    ("services.wc.preopens[0].host", 'expected a path inside $APPDATA without ".."',
     WC + 'preopens = [{ guest = "/d", host = "$APPDATA/../x" }]\n'),
    ("services.wc.preopens[0].readonly", "unknown key",
     WC + 'preopens = [{ guest = "/d", host = "d", readonly = true }]\n'),
    ("services.wc.preopens[1].guest", 'duplicate guest path "/d"',
     WC + 'preopens = [{ guest = "/d", host = "a" }, { guest = "/d/", host = "b" }]\n'),
    ("services.wc.preopens[0].guest", '"/scratch" is reserved when scratch = true',
     WC + 'scratch = true\npreopens = [{ guest = "/scratch", host = "s" }]\n'),
    ("services.wc.limits.memory", 'expected a size like "64MiB", got "64 MB/s"',
     WC + 'limits = { memory = "64 MB/s" }\n'),
    ("services.wc.limits.memory", "expected a size greater than 0, got 0",
     WC + "limits = { memory = 0 }\n"),
    ("services.wc.limits.memory", "expected an integer or a size string, got a boolean",
     WC + "limits = { memory = true }\n"),
    ("services.wc.limits.timeout", 'expected a duration like "30s", "500ms" or "2m", '
     'got "5 minutes"', WC + 'limits = { timeout = "5 minutes" }\n'),
    ("services.wc.limits.timeout", "expected a duration greater than 0, got -1",
     WC + "limits = { timeout = -1 }\n"),
    ("services.wc.limits.timeout", "expected a duration greater than 0, got -2359967529",
     WC + "limits = { timeout = -" + "2359967529" * 32 + " }\n"),
    ("services.wc.limits.instances", "expected an integer greater than 0, got 0",
     WC + "limits = { instances = 0 }\n"),
    ("services.wc.limits.instances", "expected an integer, got a float",
     WC + "limits = { instances = 1.5 }\n"),
    ("services.wc.limits.memroy", 'unknown key (did you mean "memory"?)',
     WC + 'limits = { memroy = "1MiB" }\n'),
    ("services.wc.build.command", "missing required key", WC + 'build = { workdir = "src" }\n'),
    ("services.wc.build.watch", "expected an array of strings, got a string",
     WC + 'build = { command = "make", watch = "*.c" }\n'),
    ("services.wc.user_grants", "expected a boolean, got a string", WC + 'user_grants = "yes"\n'),
    ("target.linuxx", 'unknown key (did you mean "linux"?)', APP + "[target.linuxx]\n"),
    ("target.windows.webview", "unknown key", APP + '[target.windows]\nwebview = "qt"\n'),
    ("target.linux.webview", 'expected "gtk" or "qt", got "edge"',
     APP + '[target.linux]\nwebview = "edge"\n'),
    ("webview", "unknown key (webview is set under [target.linux])", 'webview = "qt"\n' + APP),
    ("target.linux.services.wc.kind", 'expected "task", "dedicated" or "background", got "x"',
     WC + '[target.linux.services.wc]\nkind = "x"\n'),
    ("target.linux.window.width", "expected an integer, got a string",
     APP + '[target.linux.window]\nwidth = "wide"\n'),
    ("bundle.formats[0]", 'got "exe"', APP + '[bundle]\nformats = ["exe"]\n'),
    ("bundle.formats[1]", 'got "debb" (did you mean "deb"?)',
     APP + '[bundle]\nformats = ["rpm", "debb"]\n'),
    ("bundle.resources[0]", 'expected a path inside the project folder, got "../x"',
     APP + '[bundle]\nresources = ["../x"]\n'),
    ("bundle.linux.category", 'got "Utilities" (did you mean "Utility"?)',
     APP + '[bundle.linux]\ncategory = "Utilities"\n'),
    ("bundle.linux.depends[0]", 'expected a Debian package name, got "Foo Bar"',
     APP + '[bundle.linux]\ndepends = ["Foo Bar"]\n'),
    ("bundle.windows.timestamp_url", 'expected an http(s) URL, got "ftp://ts"',
     APP + '[bundle.windows]\ntimestamp_url = "ftp://ts"\n'),
    ("bundle.windows.password", "unknown key", APP + '[bundle.windows]\npassword = "hunter2"\n'),
    ("bundle.macos.notarize", "expected a boolean, got an integer",
     APP + "[bundle.macos]\nnotarize = 1\n"),
    ("bundle.macos.minimum_system_version", 'expected a version like "10.13", got "Big Sur"',
     APP + '[bundle.macos]\nminimum_system_version = "Big Sur"\n'),
    ("limits.instances_per_page", "expected an integer greater than 0, got 0",
     APP + "[limits]\ninstances_per_page = 0\n"),
    ("limits.instances_per_pag", 'unknown key (did you mean "instances_per_page"?)',
     APP + "[limits]\ninstances_per_pag = 4\n"),
    ("page.preopens[0].guest", 'expected an absolute path without ".."',
     APP + '[page]\npreopens = [{ guest = "data", host = "$APPDATA/d" }]\n'),
    ("page.preopens[1].guest", 'duplicate guest path "/d"',
     APP + '[page]\npreopens = [{ guest = "/d", host = "a" }, { guest = "/d/", host = "b" }]\n'),
    ("page.preopens[0].mode", 'expected "ro" or "rw", got "rwx"',
     APP + '[page]\npreopens = [{ guest = "/d", host = "a", mode = "rwx" }]\n'),
    ("page.preopns", 'unknown key (did you mean "preopens"?)', APP + "[page]\npreopns = []\n"),
    # desktop integration (issue 19)
    ("app.url_schemes[0]", "expected a URL scheme of lower-case letters",
     APP + 'url_schemes = ["My App"]\n'),
    ("app.url_schemes[0]", '"https" belongs to the system or the browser',
     APP + 'url_schemes = ["https"]\n'),
    ("app.url_schemes[1]", 'duplicate scheme "notes"', APP + 'url_schemes = ["notes", "notes"]\n'),
    ("app.single_instance", "expected a boolean, got a string",
     APP + 'single_instance = "yes"\n'),
    ("app.notifications", "expected a boolean, got a string", APP + 'notifications = "yes"\n'),
    ("app.tray_menu", "a tray menu needs a tray icon: set tray = true",
     APP + 'tray_menu = [{ label = "Quit", id = "quit" }]\n'),
    ("app.tray_menu[1].id", 'duplicate menu id "quit"',
     APP + 'tray = true\ntray_menu = [{ label = "Quit", id = "quit" }, '
     '{ label = "Again", id = "quit" }]\n'),
    ("bundle.file_associations[0].extensions", "missing required key",
     APP + '[[bundle.file_associations]]\nmime_type = "text/x-a"\nname = "A"\n'),
    ("bundle.file_associations[0].extensions[0]", 'expected an extension without the dot',
     APP + '[[bundle.file_associations]]\nextensions = [".note"]\nmime_type = "text/x-a"\n'
     'name = "A"\n'),
    ("bundle.file_associations[1].extensions[0]", 'extension "NOTE" is associated twice',
     APP + '[[bundle.file_associations]]\nextensions = ["note"]\nmime_type = "text/x-a"\n'
     'name = "A"\n[[bundle.file_associations]]\nextensions = ["NOTE"]\n'
     'mime_type = "text/x-b"\nname = "B"\n'),
    ("bundle.file_associations[0].mime_type", 'expected a MIME type like "application/x-note"',
     APP + '[[bundle.file_associations]]\nextensions = ["a"]\nmime_type = "text"\nname = "A"\n'),
    ("bundle.file_associations[0].role", 'expected "viewer" or "editor", got "owner"',
     APP + '[[bundle.file_associations]]\nextensions = ["a"]\nmime_type = "text/x-a"\n'
     'name = "A"\nrole = "owner"\n'),
    ("bundle.file_associations[0].icon", 'expected a PNG image',
     APP + '[[bundle.file_associations]]\nextensions = ["a"]\nmime_type = "text/x-a"\n'
     'name = "A"\nicon = "a.ico"\n', {"a.ico": b"\0\0\1\0"}),
    ("window.menu[0]", "expected a top-level menu", APP + '[[window.menu]]\nlabel = "Quit"\n'
     'id = "quit"\n'),
    ("window.menu[0].items[0]", 'expected either "id" (an action) or "items" (a submenu)',
     APP + '[[window.menu]]\nlabel = "File"\nitems = [{ label = "Open" }]\n'),
    ("window.menu[0].items[1].id", 'duplicate menu id "open"',
     APP + '[[window.menu]]\nlabel = "File"\nitems = [{ label = "Open", id = "open" }, '
     '{ label = "Again", id = "open" }]\n'),
    ("window.menu[0].items[0]", "a separator takes no other keys",
     APP + '[[window.menu]]\nlabel = "File"\nitems = [{ separator = true, label = "x" }]\n'),
    ("window.menu[0].items[0].items[0].items[0].items",
     "menus nest at most 4 deep", APP + '[[window.menu]]\nlabel = "A"\nitems = [{ label = "B", '
     'items = [{ label = "C", items = [{ label = "D", items = [{ label = "E", id = "e" }] }] }] '
     '}]\n'),
]


def test_desktop_integration_keys_load_typed(tmp_path: Path) -> None:
    root = write(tmp_path / "proj", APP + 'url_schemes = ["notes", "x-notes+v1"]\n'
                 'single_instance = false\nnotifications = true\ntray = true\n'
                 'tray_menu = [{ label = "Show", id = "show" }, { separator = true }]\n'
                 '[[window.menu]]\nlabel = "File"\nitems = [{ label = "Open…", id = "open" }, '
                 '{ separator = true }, '
                 '{ label = "Recent", items = [{ label = "A", id = "a" }] }]\n'
                 '[[bundle.file_associations]]\nextensions = ["Note", "notes"]\n'
                 'mime_type = "Application/X-Note"\nname = " A   note "\nrole = "editor"\n'
                 'icon = "note.png"\n',
                 {"note.png": PNG_MAGIC + b"rest"})
    m = load_manifest(root, platform="linux")
    assert m.app.url_schemes == ("notes", "x-notes+v1")
    assert m.app.single_instance is False
    assert m.app.notifications is True and m.app.tray is True
    assert m.app.tray_menu == (MenuItem("Show", "show"), MenuItem(separator=True))
    assert m.window.menu == (MenuItem("File", items=(
        MenuItem("Open…", "open"), MenuItem(separator=True),
        MenuItem("Recent", items=(MenuItem("A", "a"),)))),)
    assert m.bundle.file_associations == (FileAssociation(
        ("note", "notes"), "application/x-note", "A note", "editor", root / "note.png"),)
    bare = load_manifest(write(tmp_path / "bare", APP), platform="linux")
    assert bare.app.single_instance is True
    assert bare.app.notifications is False and bare.app.tray is False
    assert bare.app.url_schemes == () and bare.window.menu == ()
    assert bare.bundle.file_associations == ()


def test_page_preopens_load_typed(tmp_path: Path) -> None:
    root = write(tmp_path / "proj", APP + '[page]\npreopens = [\n'
                 '  { guest = "/notes/", host = "$APPDATA/notes", mode = "rw" },\n'
                 '  { guest = "/docs", host = "$DOCUMENTS" },\n]\n')
    page = load_manifest(root, platform="linux").page
    assert page.preopens == (Preopen("/notes", "$APPDATA/notes", "rw"),
                             Preopen("/docs", "$DOCUMENTS", "ro"))
    assert load_manifest(write(tmp_path / "bare", APP), platform="linux").page.preopens == ()


@pytest.mark.parametrize("case", BROKEN, ids=[f"{i}-{c[0]}" for i, c in enumerate(BROKEN)])
def test_broken_manifest_names_file_and_key(tmp_path: Path, case: tuple) -> None:
    key, message, text, *files = case
    root = write(tmp_path / "proj", text, *files)
    with pytest.raises(ManifestError) as info:
        load_manifest(root, platform="linux")
    err = info.value
    assert err.key == key
    assert err.file == root / "wvwasi.toml"
    assert str(err).startswith(f"{root / 'wvwasi.toml'}: {key}: "), str(err)
    assert message in str(err)


def test_exact_message_with_relative_file_name(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, WC + 'preopens = [{ guest = "/d", host = "d", mode = "rwx" }]\n')
    monkeypatch.chdir(tmp_path)
    for given in ("wvwasi.toml", "."):
        with pytest.raises(ManifestError) as info:
            load_manifest(given, platform="linux")
        assert str(info.value) == (
            'wvwasi.toml: services.wc.preopens[0].mode: expected "ro" or "rw", got "rwx"'
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[app]\nname = "x"\nname = "y"\n', "invalid TOML: Cannot overwrite a value"),
        ("[app\n", "invalid TOML: "),
    ],
)
def test_file_level_errors(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    assert info.value.key == ""
    assert str(info.value).startswith(f"{tmp_path / 'wvwasi.toml'}: {message}")


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nope/wvwasi\.toml: file not found$"):
        load_manifest(tmp_path / "nope")
    (tmp_path / "wvwasi.toml").write_bytes(b'[app]\nname = "\xff"\n')
    with pytest.raises(ManifestError, match="expected UTF-8 text"):
        load_manifest(tmp_path)


def test_unknown_platform_is_a_value_error(tmp_path: Path) -> None:
    write(tmp_path, APP)
    with pytest.raises(ValueError, match="platform must be one of"):
        load_manifest(tmp_path, platform="beos")


def test_defaults(tmp_path: Path) -> None:
    write(tmp_path, WC)
    m = load_manifest(tmp_path / "wvwasi.toml", platform="linux")
    assert m.path == tmp_path / "wvwasi.toml" and m.root == tmp_path
    assert m.app.version == "0.1.0" and m.app.icon is None and m.app.description == ""
    assert m.ui.dir == tmp_path / "ui" and m.ui.entry == "index.html"
    assert (m.window.title, m.window.width, m.window.height, m.window.resizable) == (
        "Demo", 800, 600, True)
    assert m.webview == "gtk" and m.platform == "linux"
    assert m.bundle.formats == () and m.bundle.linux.category == "Utility"
    assert m.bundle.windows.sign is False and m.bundle.macos.minimum_system_version == "10.13"
    wc = m.services["wc"]
    assert wc.source == tmp_path / "wc.wasm" and wc.source.is_absolute()
    assert (wc.kind, wc.ipc, wc.args, wc.env, wc.preopens) == ("task", "lines", (), (), ())
    assert wc.limits == Limits() and wc.build is None
    assert wc.user_grants is False and wc.scratch is False
    assert m.limits.instances_per_page == 32


def test_app_limits(tmp_path: Path) -> None:
    write(tmp_path, WC + "[limits]\ninstances_per_page = 4\n")
    assert load_manifest(tmp_path, platform="linux").limits.instances_per_page == 4


def test_full_service_is_typed(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    write(tmp_path, """
[app]
name = "Demo"
identifier = "com.example.demo-app"
version = "1.2.3-beta.1+build.5"
icon = "assets/icon.png"
[ui]
dir = "web"
entry = "main.html"
[window]
title = "A demo"
width = 1024
resizable = false
[services.zeta]
source = "z.wasm"
[services.alpha]
source = "build/a.wasm"
kind = "background"
ipc = "frames"
args = ["-v", "--x"]
env = { B = "2", A = "1" }
preopens = [
  { guest = "/data/", host = "$APPDATA/notes", mode = "rw" },
  { guest = "/r", host = "r" },
]
limits = { memory = "64MiB", timeout = "500ms", instances = 3 }
build = { command = "make a", workdir = "src", watch = ["*.c", "*.h"] }
user_grants = true
scratch = true
""", {"assets/icon.png": png, "web/main.html": b"<p>"})
    m = load_manifest(tmp_path, platform="linux")
    assert m.app.icon == tmp_path / "assets" / "icon.png"
    assert m.app.version == "1.2.3-beta.1+build.5"
    assert m.ui.dir == tmp_path / "web" and m.ui.entry == "main.html"
    assert (m.window.title, m.window.width, m.window.height, m.window.resizable) == (
        "A demo", 1024, 600, False)
    assert isinstance(m.services, MappingProxyType)
    assert list(m.services) == ["zeta", "alpha"]
    a = m.services["alpha"]
    assert a.source == tmp_path / "build" / "a.wasm"
    assert (a.kind, a.ipc, a.args) == ("background", "frames", ("-v", "--x"))
    assert a.env == (("B", "2"), ("A", "1"))
    assert a.preopens == (Preopen("/data", "$APPDATA/notes", "rw"), Preopen("/r", "r", "ro"))
    assert a.limits == Limits(memory=64 * 2**20, timeout=0.5, instances=3)
    assert a.build == BuildStep("make a", tmp_path / "src", ("*.c", "*.h"))
    assert a.user_grants and a.scratch
    with pytest.raises(TypeError):
        m.services["x"] = a  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        a.kind = "task"  # type: ignore[misc]


def test_build_workdir_defaults_to_project_root(tmp_path: Path) -> None:
    write(tmp_path, WC + 'build = { command = "make" }\n')
    assert load_manifest(tmp_path).services["wc"].build == BuildStep("make", tmp_path, ())


@pytest.mark.parametrize(
    ("value", "size"),
    [(4096, 4096), ("64MiB", 64 * 2**20), ("512KiB", 512 * 1024), ("1GiB", 2**30),
     ("10MB", 10_000_000), ("1.5 KiB", 1536), ("100", 100), ("7B", 7)],
)
def test_sizes(value: int | str, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(30, 30.0), (0.25, 0.25), ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0),
     ("1.5s", 1.5)],
)
def test_durations(value: float | str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


OVERLAYS = WC + """args = ["base"]
env = { A = "1" }
limits = { memory = "1MiB", timeout = 5 }
[window]
width = 900
height = 700
[target.linux]
webview = "qt"
[target.linux.services.wc]
kind = "dedicated"
[target.linux.services.wc.limits]
timeout = "1m"
[target.windows.services.wc]
args = ["win"]
env = { B = "2" }
[target.windows.services.winonly]
source = "w.wasm"
[target.windows.bundle]
formats = ["nsis", "msi"]
[target.macos.window]
width = 1200
[target.macos.app]
name = "Demo for Mac"
"""


def test_overlay_linux(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, OVERLAYS), platform="linux")
    wc = m.services["wc"]
    assert m.webview == "qt" and wc.kind == "dedicated" and wc.args == ("base",)
    assert wc.limits == Limits(memory=2**20, timeout=60.0)  # tables merge key by key
    assert list(m.services) == ["wc"] and m.window.width == 900


def test_overlay_windows(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, OVERLAYS), platform="windows")
    wc = m.services["wc"]
    assert m.webview == "gtk" and wc.kind == "task"
    assert wc.args == ("win",)  # arrays replace
    assert wc.env == (("A", "1"), ("B", "2"))  # tables merge
    assert list(m.services) == ["wc", "winonly"]
    assert m.bundle.formats == ("nsis", "msi") and m.platform == "windows"


def test_overlay_macos(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, OVERLAYS), platform="macos")
    assert (m.window.width, m.window.height) == (1200, 700)
    assert m.app.name == "Demo for Mac" and m.window.title == "Demo for Mac"
    assert m.app.identifier == "com.example.demo"
    assert m.services["wc"].limits == Limits(memory=2**20, timeout=5.0)


def test_other_overlays_are_not_validated_deeply(tmp_path: Path) -> None:
    """Loading for linux ignores a bad windows-only value; loading for windows reports it."""
    write(tmp_path, WC + '[target.windows.services.wc]\nipc = "pipes"\n')
    assert load_manifest(tmp_path, platform="linux").services["wc"].ipc == "lines"
    with pytest.raises(ManifestError, match=r"target\.windows\.services\.wc\.ipc: expected"):
        load_manifest(tmp_path, platform="windows")


def test_docs_full_example_loads_on_every_platform(tmp_path: Path) -> None:
    text = DOCS.read_text()
    example = re.search(r"## A full example\s+```toml\n(.*?)```", text, re.DOTALL)
    assert example
    write(tmp_path, example[1], {
        "web/index.html": b"<p>", "assets/icon.png": b"\x89PNG\r\n\x1a\n....",
        "presets/a.json": b"{}",
    })
    formats = {}
    for platform in ("linux", "windows", "macos"):
        m = load_manifest(tmp_path, platform=platform)
        formats[platform] = m.bundle.formats
        assert list(m.services) == ["resize", "catalog", "exif"]
    assert formats == {"linux": ("deb", "rpm", "appimage", "tar.gz"),
                       "windows": ("nsis", "msi"), "macos": ("app", "dmg")}


def test_manifest_file(tmp_path: Path) -> None:
    assert manifest_file(tmp_path) == tmp_path / "wvwasi.toml"
    assert manifest_file(tmp_path / "other.toml") == tmp_path / "other.toml"
    assert manifest_file("missing-dir") == Path("missing-dir/wvwasi.toml")


def test_manifest_for_wasm_needs_no_disk(tmp_path: Path) -> None:
    source = tmp_path / "not-there" / "My Tool.v2.wasm"
    m = manifest_for_wasm(source, args=["-x"], env={"K": "v"},
                          preopens=[Preopen("/d", str(tmp_path))], limits=Limits(timeout=1.0))
    assert list(m.services) == ["my-tool-v2"]
    s = m.services["my-tool-v2"]
    assert s.source == source and m.root == source.parent
    assert (s.ipc, s.kind, s.args, s.env) == ("stream", "task", ("-x",), (("K", "v"),))
    assert s.preopens == (Preopen("/d", str(tmp_path)),) and s.limits.timeout == 1.0
    assert m.window.title == "my-tool-v2" and m.ui.entry == "index.html"
    assert not (tmp_path / "not-there").exists()


def test_manifest_for_wasm_sanitises_names() -> None:
    assert list(manifest_for_wasm("/x/2d.wasm").services) == ["wasm-2d"]
    assert list(manifest_for_wasm("/x/__.wasm").services) == ["wasm"]
    assert manifest_for_wasm("/x/a_b.wasm").app.identifier == "dev.wvwasi.exec.a-b"
    with pytest.raises(ValueError, match="ipc must be one of"):
        manifest_for_wasm("/x/a.wasm", ipc="pipe")  # type: ignore[arg-type]


def test_a_menu_from_the_page_follows_the_manifest_rules() -> None:
    """`wvwasi.window.setMenu`'s JSON is read by the schema module, with its messages."""
    assert parse_menu([{"label": "Edit", "items": [{"label": "Undo", "id": "undo"}]}]) == (
        MenuItem("Edit", items=(MenuItem("Undo", "undo"),)),)
    with pytest.raises(ManifestError, match=r"^wvwasi.window.setMenu\(\): menu\[0\]: expected a "
                       "top-level menu"):
        parse_menu([{"label": "Quit", "id": "quit"}])
    with pytest.raises(ManifestError, match=r"menu\[0\].items\[0\].id: expected an id"):
        parse_menu([{"label": "Edit", "items": [{"label": "x", "id": "a b"}]}])
    with pytest.raises(ManifestError, match="at most 200 menu entries"):
        parse_menu([{"label": "Many", "items": [{"label": "x", "id": f"i{i}"}
                                                for i in range(200)]}])
    with pytest.raises(ManifestError, match="expected an array of tables, got a string"):
        parse_menu("File")
    # the page's labels: bounded and without control characters (GTK cut "a\0b" to "a")
    for label in ("x" * (MENU_LABEL + 1), "Save\0As", "two\nlines", "bell\x07", "del\x7f"):
        with pytest.raises(ManifestError, match=r"menu\[0\].items\[0\].label: expected a label "
                           f"of at most {MENU_LABEL} characters without control characters"):
            parse_menu([{"label": "Edit", "items": [{"label": label, "id": "a"}]}])
    assert parse_menu([{"label": "x" * MENU_LABEL, "items": [{"label": "Grüße ✓ _&<b>",
                                                               "id": "a"}]}])

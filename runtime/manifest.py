"""The `wvwasi.toml` schema, both directions: `load_manifest()` reads and validates it into
frozen dataclasses, `dump_manifest()` writes one back as TOML that loads equal.

This is the only module that knows the TOML layout. Every error is a `ManifestError` naming the
file and the key path (`services.wc.preopens[0].mode`). docs/manifest.md documents each key.

Adding a key: a dataclass field named exactly as the TOML key (the writer is generic: a field
is written under its own name; a nested dataclass is a table, a tuple of dataclasses an array
of tables, a tuple of pairs a table, a Path goes through `relocate`, None and empty arrays are
left out), its reading in the section's function below, its doc in docs/manifest.md, and a
strategy in tests/hostile/manifest_strategies.py: tests/hostile/test_manifest_roundtrip.py fails
until the generator covers every field and each loads back equal. A field whose TOML spelling
differs from its name is special-cased in `_NOT_WRITTEN` and `dump_manifest()`; a value
written as text (`Endpoint`: "host:port") in `_value()`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NoReturn, TypeVar, get_args

from wvwasi.runtime import guestpath
from wvwasi.runtime.paths import parse_host
from wvwasi.runtime.regularfile import FileProblem, file_type, open_regular, read_regular

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

Kind = Literal["task", "dedicated", "background"]
Ipc = Literal["lines", "frames", "stream"]
Mode = Literal["ro", "rw"]
Webview = Literal["gtk", "qt"]
Platform = Literal["linux", "windows", "macos"]
Role = Literal["viewer", "editor"]

MANIFEST_NAME = "wvwasi.toml"
PLATFORMS: tuple[str, ...] = get_args(Platform)
#: `wvwasi build --format web`: the app as a static site (docs/web.md); `[target.web]` overlays it.
WEB = "web"
TARGETS: tuple[str, ...] = (*PLATFORMS, WEB)
#: Output formats `[bundle] formats` accepts: the one list of installable formats (with WEB, the
#: packager's registry packager/formats must name exactly these; the runtime owns the names
#: because it cannot import the packager).
BUNDLE_FORMATS = (
    "dir", "onefile", "tar.gz", "deb", "rpm", "appimage", "nsis", "msi", "zip", "app", "dmg",
)
#: freedesktop.org registered main categories (`[bundle.linux] category`).
DESKTOP_CATEGORIES = (
    "AudioVideo", "Audio", "Video", "Development", "Education", "Game", "Graphics", "Network",
    "Office", "Science", "Settings", "System", "Utility",
)
#: How Windows installers provide the WebView2 runtime (`[bundle.windows] webview2`); the
#: first is the default.
WEBVIEW2_MODES = ("download-bootstrapper", "embed-bootstrapper", "offline-installer", "skip")
#: The NSIS setup's compressor (`[bundle.windows] nsis_compression`, Tauri's names); the first
#: is the default.
NSIS_COMPRESSIONS = ("lzma", "zlib", "bzip2", "none")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Default `limits.message`: the longest stdout message (line, frame, task stdout), in bytes.
DEFAULT_MESSAGE_LIMIT = 16 << 20
#: Default `[limits] instances`: live instances of all services together.
DEFAULT_HOST_INSTANCES = 256


@dataclass(frozen=True)
class Preopen:
    """A host folder visible to the service at `guest` (`host` may start with a $VARIABLE)."""

    guest: str
    host: str
    mode: Mode = "ro"


#: Default bounds on a spawn's per-spawn `files` (`limits.files`, `limits.files_size`).
DEFAULT_FILES = 256
DEFAULT_FILES_SIZE = 64 << 20


@dataclass(frozen=True)
class Limits:
    """Per-instance limits; None means unlimited (`message` always has a bound)."""

    memory: int | None = None  # bytes
    timeout: float | None = None  # seconds
    instances: int | None = None
    files: int = DEFAULT_FILES  # per-spawn files, at most this many
    files_size: int = DEFAULT_FILES_SIZE  # bytes, all per-spawn files together
    message: int = DEFAULT_MESSAGE_LIMIT  # bytes of one stdout message


#: Defaults of `[services.X] net` (docs/security.md, "Network").
DEFAULT_NET_SOCKETS = 8
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
#: Default of `[limits] sockets`: open sockets of every service together.
DEFAULT_APP_SOCKETS = 64


@dataclass(frozen=True)
class Endpoint:
    """One `net.connect` entry: a host name, `*.` wildcard or IP literal, and a port."""

    host: str  # lower-case; an IPv6 literal without brackets
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Net:
    """`[services.X] net`: the outbound TCP a service may open (nothing listed: no network)."""

    connect: tuple[Endpoint, ...] = ()
    ca: str | None = None  # a PEM bundle trusted besides the system's (may start with $VAR)
    sockets: int = DEFAULT_NET_SOCKETS  # open at once, per instance
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT  # seconds, name lookup + TCP + TLS
    read_timeout: float = DEFAULT_READ_TIMEOUT  # seconds one send or recv may wait at most


@dataclass(frozen=True)
class PageSettings:
    """`[page]`: what the app's pages may lend the modules they supply (docs/page-api.md)."""

    preopens: tuple[Preopen, ...] = ()  # host folders a page-supplied module may be given


@dataclass(frozen=True)
class AppLimits:
    """`[limits]`: app-wide bounds (docs/security.md lists every bound and its default)."""

    instances: int = DEFAULT_HOST_INSTANCES  # live instances of every service together
    instances_per_page: int = 32  # live workers + running tasks of one page connection
    sockets: int = DEFAULT_APP_SOCKETS  # open `net` sockets of every instance together


@dataclass(frozen=True)
class BuildStep:
    """How `wvwasi build`/`dev` produce a service's .wasm."""

    command: str
    workdir: Path
    watch: tuple[str, ...] = ()


@dataclass(frozen=True)
class Service:
    """One `[services.NAME]` table."""

    name: str
    source: Path
    kind: Kind = "task"
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    ipc: Ipc = "lines"
    preopens: tuple[Preopen, ...] = ()
    limits: Limits = field(default_factory=Limits)
    build: BuildStep | None = None
    user_grants: bool = False
    scratch: bool = False
    net: Net = field(default_factory=Net)


@dataclass(frozen=True)
class AppInfo:
    """`[app]`."""

    name: str
    identifier: str
    version: str = "0.1.0"
    description: str = ""
    publisher: str = ""
    icon: Path | None = None
    url_schemes: tuple[str, ...] = ()  # lower-case, e.g. ("myapp",)
    single_instance: bool = True
    notifications: bool = False  # the page may show desktop notifications (`wvwasi.notify`)
    tray: bool = False  # a tray icon (status icon) while the app runs
    tray_menu: tuple[MenuItem, ...] = ()  # `[[app.tray_menu]]`: the tray icon's menu


@dataclass(frozen=True)
class UI:
    """`[ui]`: the folder served to the page and its entry file."""

    dir: Path
    entry: str = "index.html"


@dataclass(frozen=True)
class MenuItem:
    """One `[[window.menu]]` entry: a submenu (`items`), an action (`id`) or a separator."""

    label: str = ""
    id: str | None = None  # what a click reports to the page (`menu` event)
    items: tuple[MenuItem, ...] = ()
    separator: bool = False


@dataclass(frozen=True)
class Window:
    """`[window]`."""

    title: str
    width: int = 800
    height: int = 600
    resizable: bool = True
    menu: tuple[MenuItem, ...] = ()  # `[[window.menu]]`: the menu bar's top-level menus


@dataclass(frozen=True)
class FileAssociation:
    """One `[[bundle.file_associations]]`: document types the installers register."""

    extensions: tuple[str, ...]  # without the dot, lower-case
    mime_type: str
    name: str
    role: Role = "viewer"
    icon: Path | None = None


@dataclass(frozen=True)
class LinuxBundle:
    """`[bundle.linux]`."""

    depends: tuple[str, ...] = ()
    category: str = "Utility"


@dataclass(frozen=True)
class WindowsBundle:
    """`[bundle.windows]` (the certificate itself comes from environment variables)."""

    sign: bool = False
    timestamp_url: str | None = None
    webview2: str = "download-bootstrapper"  # one of WEBVIEW2_MODES
    nsis_compression: str = "lzma"  # one of NSIS_COMPRESSIONS


@dataclass(frozen=True)
class MacosBundle:
    """`[bundle.macos]` (credentials come from environment variables)."""

    signing_identity: str | None = None
    notarize: bool = False
    minimum_system_version: str = "10.13"


@dataclass(frozen=True)
class Bundle:
    """`[bundle]`: packager settings. Empty `formats` means the packager's default for the OS."""

    formats: tuple[str, ...] = ()
    resources: tuple[Path, ...] = ()
    wvwasi: str | None = None  # a published wvwasi version the release workflow installs
    file_associations: tuple[FileAssociation, ...] = ()
    linux: LinuxBundle = field(default_factory=LinuxBundle)
    windows: WindowsBundle = field(default_factory=WindowsBundle)
    macos: MacosBundle = field(default_factory=MacosBundle)


#: How the Windows installers run for an update (`[update] windows.install_mode`); first = default.
UPDATE_INSTALL_MODES = ("passive", "quiet", "basic-ui")


@dataclass(frozen=True)
class UpdateWindows:
    """`[update.windows]`."""

    install_mode: str = UPDATE_INSTALL_MODES[0]  # how the setup runs for an update


@dataclass(frozen=True)
class UpdateSettings:
    """`[update]`: where a built app looks for new versions and the key they must be signed
    with (docs/update.md)."""

    endpoints: tuple[str, ...]  # URLs of latest.json, with {{target}}/{{arch}}/{{current_version}}
    pubkey: str  # minisign public key (the content of KEY.pub)
    download_url: str | None = None  # base URL of the artefacts, for latest.json's `url`s
    windows: UpdateWindows = field(default_factory=UpdateWindows)


@dataclass(frozen=True)
class Manifest:
    """A validated `wvwasi.toml` for one platform; paths are absolute (preopen hosts excepted)."""

    path: Path
    root: Path
    app: AppInfo
    ui: UI
    window: Window
    services: Mapping[str, Service]
    webview: Webview = "gtk"
    bundle: Bundle = field(default_factory=Bundle)
    platform: Platform | Literal["web"] = "linux"
    limits: AppLimits = field(default_factory=AppLimits)
    page: PageSettings = field(default_factory=PageSettings)
    update: UpdateSettings | None = None

    def service(self, name: str) -> Service:
        """The service `name`, or LookupError listing the known ones."""
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(self.services) or "none"
            raise LookupError(
                f"no service named '{name}' in {self.path.name} (services: {known})"
            ) from None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ManifestError(Exception):
    """A bad manifest: `str()` is `"<file>: <key.path>: <why>"`."""

    def __init__(self, file: Path | str, key: str, message: str) -> None:
        self.file = Path(file)
        self.key = key
        self.message = message
        text = f"{file}: {key}: {message}" if key else f"{file}: {message}"
        super().__init__(_CONTROL.sub(lambda m: repr(m[0])[1:-1], text))  # always one line


@dataclass(frozen=True)
class ManifestCheck:
    """Everything `check_manifest()` found: the manifest if it is valid, else every problem
    (at most one per section or service), and the services that did validate."""

    manifest: Manifest | None
    errors: tuple[ManifestError, ...]
    services: Mapping[str, Service]


def current_platform() -> Platform:
    """The running OS as a target name."""
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux"


# --- reading TOML values ---------------------------------------------------------------------

KeyPath = tuple[str | int, ...]
T = TypeVar("T")
_REQUIRED: Any = object()
_SECTIONS = ("app", "ui", "window", "services", "bundle", "limits", "page", "update")
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9-]*)+\Z")
_VERSION = re.compile(r"\d+(\.\d+){1,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?\Z")
_MACOS_VERSION = re.compile(r"\d+(\.\d+){0,2}\Z")
_DEB_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+\Z")
_URL_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*\Z")
#: Schemes an app may not claim (`[app] url_schemes`): the web's, the system's, the browser's.
RESERVED_SCHEMES = frozenset((
    "http", "https", "file", "ftp", "ws", "wss", "data", "blob", "javascript", "about",
    "mailto", "tel", "sms", "ssh", "chrome", "edge", "view-source", "ms-settings", "x-apple",
))
_EXTENSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]*\Z")
_MIME_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\Z")
_MENU_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
#: Bounds on `[[window.menu]]`: nesting depth (the top-level menus count) and entries in all.
MENU_DEPTH = 4
MENU_ITEMS = 200
#: Bound on a menu entry's `label` (characters); control characters are refused.
MENU_LABEL = 256
_LABEL_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*\Z")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*\Z")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: Upper bounds: sizes fit wasmtime's i64 limits; durations fit threading's timeouts.
MAX_SIZE = 2**63 - 1
MAX_DURATION = 2.0**31  # seconds, ~68 years
MAX_INT = 2**31 - 1  # window sizes, instance counts
#: Bounds on the files a manifest names (the manifest itself, the icon).
MAX_MANIFEST_BYTES = 1 << 20
MAX_ICON_BYTES = 64 << 20


def _what(value: object) -> str:
    """A TOML type name with its article, for "got ..." messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _show(value: object) -> str:
    """A value as TOML would spell it (strings double-quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return json.dumps(value)
    return _what(value)


def _choices(options: Iterable[str]) -> str:
    quoted = [json.dumps(o) for o in options]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {json.dumps(close[0])}?)" if close else ""


class _Reader:
    """Reads raw TOML data, raising ManifestError with the key path the user wrote."""

    def __init__(self, file: Path, root: Path, overlay: str = "", overridden: set | None = None):
        self.file = file
        self.root = root
        self.overlay = overlay  # "target.linux" when an overlay was merged in
        self.overridden: set[KeyPath] = overridden or set()
        self.menu_count = 0  # `[[window.menu]]` entries read so far (MENU_ITEMS)

    def fail(self, path: KeyPath, message: str) -> NoReturn:
        raise ManifestError(self.file, self.key_name(path), message)

    def key_name(self, path: KeyPath) -> str:
        """`services.wc.preopens[0]`, prefixed with `target.X.` if the overlay supplied it."""
        text = ""
        for part in path:
            if isinstance(part, int):
                text += f"[{part}]"
            else:
                bare = re.fullmatch(r"[A-Za-z0-9_-]+", part)
                text += ("." if text else "") + (part if bare else json.dumps(part))
        if any(path[:n] in self.overridden for n in range(1, len(path) + 1)):
            return f"{self.overlay}.{text}"
        return text

    def mapping(self, value: object, path: KeyPath) -> dict[str, Any]:
        """`value` as a table with any keys."""
        if not isinstance(value, dict):
            self.fail(path, f"expected a table, got {_what(value)}")
        return value

    def table(self, value: object, path: KeyPath, known: Iterable[str]) -> dict[str, Any]:
        """`value` as a table whose keys are all in `known`."""
        self.mapping(value, path)
        known = tuple(known)
        for key in value:
            if key not in known:
                self.fail((*path, key), "unknown key" + _did_you_mean(key, known))
        return value

    def get(self, t: dict[str, Any], path: KeyPath, key: str, default: Any) -> Any:
        """`t[key]`, else `default`; a missing key without a default is an error."""
        if key not in t:
            if default is _REQUIRED:
                self.fail((*path, key), "missing required key")
            return default
        return t[key]

    def string(self, t: dict, path: KeyPath, key: str, default: Any = _REQUIRED) -> Any:
        value = self.get(t, path, key, default)
        if value is not default and not isinstance(value, str):
            self.fail((*path, key), f"expected a string, got {_what(value)}")
        return value

    def nonempty(self, t: dict, path: KeyPath, key: str, default: Any = _REQUIRED) -> Any:
        value = self.string(t, path, key, default)
        if value is not default and not value.strip():
            self.fail((*path, key), "expected a non-empty string, got \"\"")
        return value

    def boolean(self, t: dict, path: KeyPath, key: str, default: bool) -> bool:
        value = self.get(t, path, key, default)
        if not isinstance(value, bool):
            self.fail((*path, key), f"expected a boolean, got {_what(value)}")
        return value

    def positive_int(self, t: dict, path: KeyPath, key: str, default: Any) -> Any:
        value = self.get(t, path, key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail((*path, key), f"expected an integer, got {_what(value)}")
        if value < 1:
            self.fail((*path, key), f"expected an integer greater than 0, got {value}")
        if value > MAX_INT:
            self.fail((*path, key), f"expected an integer at most {MAX_INT}, got {value}")
        return value

    def choice(self, t: dict, path: KeyPath, key: str, options: tuple[str, ...], default: str):
        value = self.string(t, path, key, default)
        if value not in options:
            hint = _did_you_mean(value, options) if len(options) > 2 else ""
            self.fail((*path, key), f"expected {_choices(options)}, got {_show(value)}{hint}")
        return value

    def strings(self, t: dict, path: KeyPath, key: str) -> tuple[str, ...]:
        value = self.get(t, path, key, [])
        if not isinstance(value, list):
            self.fail((*path, key), f"expected an array of strings, got {_what(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail((*path, key, i), f"expected a string, got {_what(item)}")
        return tuple(value)

    def project_path(self, value: str, path: KeyPath, *, inside: bool = False) -> Path:
        """A path relative to the project folder, made absolute (`inside`: no absolute/`..`)."""
        if not value:
            self.fail(path, 'expected a path, got ""')
        if inside and (Path(value).is_absolute() or ".." in Path(value).parts):
            self.fail(path, f"expected a path inside the project folder, got {_show(value)}")
        try:
            return (self.root / value).resolve()
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
            self.fail(path, f"{_show(value)} is a symlink loop or cannot be resolved")

    def check_strings(self, value: object, path: KeyPath) -> None:
        """Fail on the first key or string anywhere in `value` holding a NUL character (no
        OS path, argument or variable can carry one)."""
        if isinstance(value, str) and "\0" in value:
            self.fail(path, "expected a string without NUL characters")
        items = value.items() if isinstance(value, dict) else enumerate(value) \
            if isinstance(value, list) else ()
        for key, item in items:
            if isinstance(key, str) and "\0" in key:
                self.fail((*path, key), "expected a key without NUL characters")
            self.check_strings(item, (*path, key))


# --- the sections ----------------------------------------------------------------------------


def _png(r: _Reader, t: dict, p: KeyPath, key: str) -> Path | None:
    """The PNG file `t[key]` names (a project path), or None when the key is absent."""
    icon = r.string(t, p, key, None)
    if icon is None:
        return None
    icon_path = r.project_path(icon, (*p, key))
    try:
        with open_regular(icon_path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(len(PNG_MAGIC))
    except (FileProblem, OSError) as e:
        why = e.reason if isinstance(e, FileProblem) else e.strerror
        r.fail((*p, key), f"cannot read {_show(icon)}: {why}")
    if size > MAX_ICON_BYTES:
        r.fail((*p, key), f"{_show(icon)} is larger than {MAX_ICON_BYTES:,} bytes")
    if head != PNG_MAGIC:
        r.fail((*p, key), f"expected a PNG image, got {_show(icon)} which is not a PNG")
    return icon_path


def _app(r: _Reader, raw: object) -> AppInfo:
    p: KeyPath = ("app",)
    t = r.table(raw, p, ("name", "identifier", "version", "description", "publisher", "icon",
                         "url_schemes", "single_instance", "notifications", "tray",
                         "tray_menu"))
    name = r.nonempty(t, p, "name")
    identifier = r.string(t, p, "identifier")
    if not _IDENTIFIER.match(identifier):
        r.fail((*p, "identifier"), 'expected a reverse-DNS name like "com.example.app", '
               f"got {_show(identifier)}")
    version = r.string(t, p, "version", "0.1.0")
    if not _VERSION.match(version):
        r.fail((*p, "version"), f'expected a version like "1.2.3", got {_show(version)}')
    schemes = r.strings(t, p, "url_schemes")
    for i, scheme in enumerate(schemes):
        if not _URL_SCHEME.match(scheme):
            r.fail((*p, "url_schemes", i), "expected a URL scheme of lower-case letters, digits, "
                   f"'+', '-' and '.' starting with a letter, got {_show(scheme)}")
        if scheme in RESERVED_SCHEMES:
            r.fail((*p, "url_schemes", i), f"{_show(scheme)} belongs to the system or the "
                   "browser: choose a scheme of the app's own")
        if scheme in schemes[:i]:
            r.fail((*p, "url_schemes", i), f"duplicate scheme {_show(scheme)}")
    tray = r.boolean(t, p, "tray", False)
    tray_menu = _menu_items(r, t.get("tray_menu", []), (*p, "tray_menu"), depth=1, ids=set())
    if tray_menu and not tray:
        r.fail((*p, "tray_menu"), "a tray menu needs a tray icon: set tray = true")
    return AppInfo(
        name=name,
        identifier=identifier,
        version=version,
        description=r.string(t, p, "description", ""),
        publisher=r.string(t, p, "publisher", ""),
        icon=_png(r, t, p, "icon"),
        url_schemes=schemes,
        single_instance=r.boolean(t, p, "single_instance", True),
        notifications=r.boolean(t, p, "notifications", False),
        tray=tray,
        tray_menu=tray_menu,
    )


def _ui(r: _Reader, raw: object) -> UI:
    p: KeyPath = ("ui",)
    t = r.table(raw, p, ("dir", "entry"))
    dir_name = r.nonempty(t, p, "dir", "ui")
    folder = r.project_path(dir_name, (*p, "dir"))
    if file_type(folder) != stat.S_IFDIR:
        r.fail((*p, "dir"), f"expected an existing folder, got {_show(dir_name)} ({folder})")
    entry = r.nonempty(t, p, "entry", "index.html")
    if Path(entry).is_absolute() or ".." in Path(entry).parts:
        r.fail((*p, "entry"), f"expected a path inside {_show(dir_name)}, got {_show(entry)}")
    if file_type(folder / entry) != stat.S_IFREG:
        r.fail((*p, "entry"), f"expected a file in {_show(dir_name)}, got {_show(entry)} "
               f"({folder / entry} does not exist)")
    return UI(dir=folder, entry=entry)


def _window(r: _Reader, raw: object, default_title: str) -> Window:
    p: KeyPath = ("window",)
    t = r.table(raw, p, ("title", "width", "height", "resizable", "menu"))
    menu = _menu_bar(r, t.get("menu", []), (*p, "menu"))
    return Window(
        title=r.string(t, p, "title", default_title),
        width=r.positive_int(t, p, "width", 800),
        height=r.positive_int(t, p, "height", 600),
        resizable=r.boolean(t, p, "resizable", True),
        menu=menu,
    )


def parse_menu(raw: object) -> tuple[MenuItem, ...]:
    """A menu bar the page sets (`wvwasi.window.setMenu`): the JSON form of `[[window.menu]]`
    under the same rules; ManifestError naming the bad entry (`menu[0].items[1].id: ...`)."""
    return _menu_bar(_Reader(Path("wvwasi.window.setMenu()"), Path()), raw, ("menu",))


def _menu_bar(r: _Reader, raw: object, p: KeyPath) -> tuple[MenuItem, ...]:
    """Top-level menus (each a `{label, items}`) and what they hold (_menu_items)."""
    menu = _menu_items(r, raw, p, depth=1, ids=set())
    if any(m.separator or not m.items for m in menu):
        bad = next(i for i, m in enumerate(menu) if m.separator or not m.items)
        r.fail((*p, bad), "expected a top-level menu: { label, items = [...] }")
    return menu


def _menu_items(r: _Reader, raw: object, p: KeyPath, depth: int, ids: set[str]
                ) -> tuple[MenuItem, ...]:
    """`[[window.menu]]` entries and their `items`, at most MENU_DEPTH deep and MENU_ITEMS in
    all; every `id` unique."""
    if not isinstance(raw, list):
        r.fail(p, f"expected an array of tables, got {_what(raw)}")
    if depth > MENU_DEPTH:
        r.fail(p, f"menus nest at most {MENU_DEPTH} deep")
    items = []
    for i, value in enumerate(raw):
        q = (*p, i)
        t = r.table(value, q, ("label", "id", "items", "separator"))
        if r.boolean(t, q, "separator", False):
            if len(t) > 1:
                r.fail(q, "a separator takes no other keys")
            items.append(MenuItem(separator=True))
            continue
        label = r.nonempty(t, q, "label")
        if len(label) > MENU_LABEL or _LABEL_CONTROL.search(label):
            r.fail((*q, "label"), f"expected a label of at most {MENU_LABEL} characters without "
                   f"control characters, got {_show(label)}")
        ident = r.string(t, q, "id", None)
        if ("items" in t) == (ident is not None):
            r.fail(q, 'expected either "id" (an action) or "items" (a submenu)')
        if ident is not None:
            if not _MENU_ID.match(ident):
                r.fail((*q, "id"), "expected an id of letters, digits, '.', '-' and '_', "
                       f"got {_show(ident)}")
            if ident in ids:
                r.fail((*q, "id"), f"duplicate menu id {_show(ident)}")
            ids.add(ident)
        sub = _menu_items(r, t["items"], (*q, "items"), depth + 1, ids) if "items" in t else ()
        if "items" in t and not sub:
            r.fail((*q, "items"), "expected at least one item")
        items.append(MenuItem(label=label, id=ident, items=sub))
        r.menu_count += 1
        if r.menu_count > MENU_ITEMS:
            r.fail(q, f"at most {MENU_ITEMS} menu entries")
    return tuple(items)


def parse_size(value: int | str) -> int:
    """Bytes from an integer or `"64MiB"`, `"512KiB"`, `"10MB"`; ValueError if malformed."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected an integer or a size string, got {_what(value)}")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(value)
        if not m:
            raise ValueError(f'expected a size like "64MiB", got {_show(value)}')
        n = int(Decimal(m[1]) * _SIZE_UNITS[m[2]])
    if n < 1:
        raise ValueError(f"expected a size greater than 0, got {_show(value)}")
    if n > MAX_SIZE:
        raise ValueError(f"expected a size at most {MAX_SIZE} bytes, got {_show(value)}")
    return n


def parse_duration(value: float | str) -> float:
    """Seconds from a number or `"30s"`, `"500ms"`, `"2m"`, `"1h"`; ValueError if malformed."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number of seconds or a duration string, got {_what(value)}")
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f'expected a duration like "30s", "500ms" or "2m", got {_show(value)}')
        seconds = float(m[1]) * _DURATION_UNITS[m[2]]
    else:  # float() of an integer past ±1e308 overflows: clamp first (the message shows value)
        seconds = float(max(-1, min(value, 2 * MAX_DURATION)))
    if not seconds > 0:
        raise ValueError(f"expected a duration greater than 0, got {_show(value)}")
    if seconds > MAX_DURATION:
        raise ValueError(f"expected a duration at most {MAX_DURATION:.0f} seconds, "
                         f"got {_show(value)}")
    return seconds


def _limits(r: _Reader, raw: object, p: KeyPath) -> Limits:
    t = r.table(raw, p, ("memory", "timeout", "instances", "files", "files_size", "message"))
    values: dict[str, Any] = {}
    for key, parse in (
        ("memory", parse_size), ("timeout", parse_duration), ("files_size", parse_size),
        ("message", parse_size),
    ):
        if key in t:
            try:
                values[key] = parse(t[key])
            except ValueError as e:
                r.fail((*p, key), str(e))
    return Limits(**values, instances=r.positive_int(t, p, "instances", None),
                  files=r.positive_int(t, p, "files", DEFAULT_FILES))


def _app_limits(r: _Reader, raw: object) -> AppLimits:
    p: KeyPath = ("limits",)
    t = r.table(raw, p, ("instances", "instances_per_page", "sockets"))
    return AppLimits(
        instances=r.positive_int(t, p, "instances", DEFAULT_HOST_INSTANCES),
        instances_per_page=r.positive_int(t, p, "instances_per_page",
                                          AppLimits.instances_per_page),
        sockets=r.positive_int(t, p, "sockets", DEFAULT_APP_SOCKETS),
    )


def _page(r: _Reader, raw: object) -> PageSettings:
    p: KeyPath = ("page",)
    t = r.table(raw, p, ("preopens",))
    raw_preopens = t.get("preopens", [])
    if not isinstance(raw_preopens, list):
        r.fail((*p, "preopens"), f"expected an array of tables, got {_what(raw_preopens)}")
    preopens = tuple(_preopen(r, v, (*p, "preopens", i)) for i, v in enumerate(raw_preopens))
    for i, pre in enumerate(preopens):
        if any(q.guest == pre.guest for q in preopens[:i]):
            r.fail((*p, "preopens", i, "guest"), f"duplicate guest path {_show(pre.guest)}")
    return PageSettings(preopens=preopens)


def _preopen(r: _Reader, raw: object, p: KeyPath) -> Preopen:
    t = r.table(raw, p, ("guest", "host", "mode"))
    guest = r.string(t, p, "guest")
    expected = 'expected an absolute path without ".."'
    if not guest.startswith("/") or ".." in guest.split("/"):
        r.fail((*p, "guest"), f"{expected}, got {_show(guest)}")
    try:
        guest = guestpath.normalize(guest)
    except guestpath.GuestPathError as e:
        r.fail((*p, "guest"), f"{expected}: {e}")
    host = r.nonempty(t, p, "host")
    if "\0" in host:
        r.fail((*p, "host"), f"expected a path without NUL characters, got {_show(host)}")
    try:
        parse_host(host)
    except ValueError as e:
        r.fail((*p, "host"), str(e))
    mode = r.choice(t, p, "mode", get_args(Mode), "ro")
    return Preopen(guest=guest, host=host, mode=mode)


def _build_step(r: _Reader, raw: object, p: KeyPath) -> BuildStep:
    t = r.table(raw, p, ("command", "workdir", "watch"))
    command = r.nonempty(t, p, "command")
    workdir = r.string(t, p, "workdir", None)
    return BuildStep(
        command=command,
        workdir=r.project_path(workdir, (*p, "workdir")) if workdir is not None else r.root,
        watch=r.strings(t, p, "watch"),
    )


_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


def parse_endpoint(text: str) -> Endpoint:
    """`"api.example.com:443"`, `"*.example.org:443"`, `"127.0.0.1:8080"` or `"[::1]:8080"`;
    ValueError naming what is wrong."""
    expected = 'expected "host:port" (e.g. "api.example.com:443", "*.example.org:443", "[::1]:80")'
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{expected}, got {_show(text)}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"expected a port from 1 to 65535, got {_show(text)}")
    if host.startswith("[") and host.endswith("]"):
        try:
            return Endpoint(str(ipaddress.IPv6Address(host[1:-1])), port)
        except ValueError:
            raise ValueError(f"{expected}: {host} is not an IPv6 address") from None
    host = host.lower().rstrip(".")
    try:
        return Endpoint(str(ipaddress.IPv4Address(host)), port)
    except ValueError:
        pass
    labels = host.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if len(labels) < (2 if host.startswith("*.") else 1) or not all(
        _HOST_LABEL.match(label) for label in labels
    ):
        raise ValueError(f"{expected}: {_show(host)} is not a host name, a *. wildcard or an "
                         "IP address")
    return Endpoint(host, port)


def _net(r: _Reader, raw: object, p: KeyPath) -> Net:
    t = r.table(raw, p, ("connect", "ca", "sockets", "connect_timeout", "read_timeout"))
    endpoints = []
    for i, entry in enumerate(r.strings(t, p, "connect")):
        try:
            endpoints.append(parse_endpoint(entry))
        except ValueError as e:
            r.fail((*p, "connect", i), str(e))
    ca = r.string(t, p, "ca", None)
    if ca is not None:
        try:
            parse_host(ca)
        except ValueError as e:
            r.fail((*p, "ca"), str(e))
    timeouts: dict[str, float] = {}
    for key in ("connect_timeout", "read_timeout"):
        if key in t:
            try:
                timeouts[key] = parse_duration(t[key])
            except ValueError as e:
                r.fail((*p, key), str(e))
    return Net(connect=tuple(endpoints), ca=ca,
               sockets=r.positive_int(t, p, "sockets", DEFAULT_NET_SOCKETS), **timeouts)


_SERVICE_KEYS = (
    "source", "kind", "args", "env", "ipc", "preopens", "limits", "build", "user_grants",
    "scratch", "net",
)


def _service(r: _Reader, name: str, raw: object) -> Service:
    p: KeyPath = ("services", name)
    if not _SERVICE_NAME.match(name):
        r.fail(p, "expected a service name of lower-case letters, digits, '-' and '_' "
               "starting with a letter")
    t = r.table(raw, p, _SERVICE_KEYS)
    source = r.string(t, p, "source")
    env = r.mapping(t.get("env", {}), (*p, "env"))
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            r.fail((*p, "env", key), "expected a variable name without '=', got "
                   f"{_show(key)}")
        if not isinstance(value, str):
            r.fail((*p, "env", key), f"expected a string, got {_what(value)}")
        if "\0" in value:
            r.fail((*p, "env", key), "expected a value without NUL characters")
    args = r.strings(t, p, "args")
    for i, arg in enumerate(args):
        if "\0" in arg:
            r.fail((*p, "args", i), "expected an argument without NUL characters")
    raw_preopens = t.get("preopens", [])
    if not isinstance(raw_preopens, list):
        r.fail((*p, "preopens"), f"expected an array of tables, got {_what(raw_preopens)}")
    preopens = tuple(_preopen(r, v, (*p, "preopens", i)) for i, v in enumerate(raw_preopens))
    scratch = r.boolean(t, p, "scratch", False)
    seen: set[str] = set()
    for i, pre in enumerate(preopens):
        if pre.guest in seen:
            r.fail((*p, "preopens", i, "guest"), f"duplicate guest path {_show(pre.guest)}")
        if scratch and pre.guest == "/scratch":
            r.fail((*p, "preopens", i, "guest"), '"/scratch" is reserved when scratch = true')
        seen.add(pre.guest)
    return Service(
        name=name,
        source=r.project_path(source, (*p, "source")),
        kind=r.choice(t, p, "kind", get_args(Kind), "task"),
        args=args,
        env=tuple(env.items()),
        ipc=r.choice(t, p, "ipc", get_args(Ipc), "lines"),
        preopens=preopens,
        limits=_limits(r, t.get("limits", {}), (*p, "limits")),
        build=_build_step(r, t["build"], (*p, "build")) if "build" in t else None,
        user_grants=r.boolean(t, p, "user_grants", False),
        scratch=scratch,
        net=_net(r, t["net"], (*p, "net")) if "net" in t else Net(),
    )


def _bundle(r: _Reader, raw: object) -> Bundle:
    p: KeyPath = ("bundle",)
    t = r.table(raw, p, ("formats", "resources", "wvwasi", "linux", "windows", "macos",
                         "file_associations"))
    wvwasi = r.string(t, p, "wvwasi", None)
    if wvwasi is not None and not re.match(r"\d+(\.\d+)*([.+-]?[0-9A-Za-z.]+)?\Z", wvwasi):
        r.fail((*p, "wvwasi"), f'expected a version like "0.2.0", got {_show(wvwasi)}')
    formats = r.strings(t, p, "formats")
    for i, fmt in enumerate(formats):
        if fmt not in BUNDLE_FORMATS:
            r.fail((*p, "formats", i), f"expected one of {_choices(BUNDLE_FORMATS)}, "
                   f"got {_show(fmt)}{_did_you_mean(fmt, BUNDLE_FORMATS)}")
    resources = tuple(
        r.project_path(v, (*p, "resources", i), inside=True)
        for i, v in enumerate(r.strings(t, p, "resources"))
    )
    lp = (*p, "linux")
    lt = r.table(t.get("linux", {}), lp, ("depends", "category"))
    depends = r.strings(lt, lp, "depends")
    for i, dep in enumerate(depends):
        if not _DEB_PACKAGE.match(dep):
            r.fail((*lp, "depends", i), f"expected a Debian package name, got {_show(dep)}")
    wp = (*p, "windows")
    wt = r.table(t.get("windows", {}), wp, ("sign", "timestamp_url", "webview2",
                                                      "nsis_compression"))
    timestamp_url = r.string(wt, wp, "timestamp_url", None)
    if timestamp_url is not None and not re.match(r"https?://\S+\Z", timestamp_url):
        r.fail((*wp, "timestamp_url"), f"expected an http(s) URL, got {_show(timestamp_url)}")
    mp = (*p, "macos")
    mt = r.table(t.get("macos", {}), mp, ("signing_identity", "notarize", "minimum_system_version"))
    min_version = r.string(mt, mp, "minimum_system_version", "10.13")
    if not _MACOS_VERSION.match(min_version):
        r.fail((*mp, "minimum_system_version"),
               f'expected a version like "10.13", got {_show(min_version)}')
    return Bundle(
        formats=tuple(dict.fromkeys(formats)),
        resources=resources,
        wvwasi=wvwasi,
        file_associations=_file_associations(r, t.get("file_associations", []),
                                             (*p, "file_associations")),
        linux=LinuxBundle(
            depends=depends,
            category=r.choice(lt, lp, "category", DESKTOP_CATEGORIES, "Utility"),
        ),
        windows=WindowsBundle(
            sign=r.boolean(wt, wp, "sign", False), timestamp_url=timestamp_url,
            webview2=r.choice(wt, wp, "webview2", WEBVIEW2_MODES, WEBVIEW2_MODES[0]),
            nsis_compression=r.choice(wt, wp, "nsis_compression", NSIS_COMPRESSIONS,
                                      NSIS_COMPRESSIONS[0]),
        ),
        macos=MacosBundle(
            signing_identity=r.string(mt, mp, "signing_identity", None),
            notarize=r.boolean(mt, mp, "notarize", False),
            minimum_system_version=min_version,
        ),
    )


def _update_url(r: _Reader, value: str, path: KeyPath) -> str:
    """An update URL: https, or http to a loopback address only (docs/security.md)."""
    from urllib.parse import urlsplit

    from wvwasi.runtime.update.fetch import is_loopback

    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    if parts is None or not host or any(c in value for c in " \t\r\n"):
        r.fail(path, f"expected an http(s) URL, got {_show(value)}")
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(host)):
        r.fail(path, f"expected an https:// URL (http only to a loopback address), "
               f"got {_show(value)}")
    return value


def _update(r: _Reader, raw: object) -> UpdateSettings:
    from wvwasi.runtime.update.minisign import SignatureError, parse_public_key

    p: KeyPath = ("update",)
    t = r.table(raw, p, ("endpoints", "pubkey", "download_url", "windows"))
    endpoints = r.strings(t, p, "endpoints")
    if not endpoints:
        r.fail((*p, "endpoints"), "expected at least one URL of a latest.json")
    for i, url in enumerate(endpoints):
        _update_url(r, url, (*p, "endpoints", i))
    pubkey = r.nonempty(t, p, "pubkey")
    try:
        parse_public_key(pubkey)
    except SignatureError as e:
        r.fail((*p, "pubkey"), str(e))
    download_url = r.string(t, p, "download_url", None)
    if download_url is not None:
        _update_url(r, download_url, (*p, "download_url"))
    wp = (*p, "windows")
    wt = r.table(t.get("windows", {}), wp, ("install_mode",))
    return UpdateSettings(
        endpoints=endpoints, pubkey=pubkey, download_url=download_url,
        windows=UpdateWindows(r.choice(wt, wp, "install_mode", UPDATE_INSTALL_MODES,
                                       UPDATE_INSTALL_MODES[0])),
    )


def _file_associations(r: _Reader, raw: object, p: KeyPath) -> tuple[FileAssociation, ...]:
    if not isinstance(raw, list):
        r.fail(p, f"expected an array of tables, got {_what(raw)}")
    found: list[FileAssociation] = []
    seen: set[str] = set()
    for i, value in enumerate(raw):
        q = (*p, i)
        t = r.table(value, q, ("extensions", "mime_type", "name", "role", "icon"))
        r.get(t, q, "extensions", _REQUIRED)
        extensions = r.strings(t, q, "extensions")
        if not extensions:
            r.fail((*q, "extensions"), 'expected at least one extension, like ["note"]')
        for j, ext in enumerate(extensions):
            if not _EXTENSION.match(ext):
                r.fail((*q, "extensions", j), "expected an extension without the dot, of "
                       f"letters, digits, '_', '+' and '-', got {_show(ext)}")
            if ext.lower() in seen:
                r.fail((*q, "extensions", j), f"extension {_show(ext)} is associated twice")
            seen.add(ext.lower())
        mime = r.string(t, q, "mime_type")
        if not _MIME_TYPE.match(mime):
            r.fail((*q, "mime_type"), f'expected a MIME type like "application/x-note", '
                   f"got {_show(mime)}")
        found.append(FileAssociation(
            extensions=tuple(e.lower() for e in extensions),
            mime_type=mime.lower(),
            name=" ".join(r.nonempty(t, q, "name").split()),
            role=r.choice(t, q, "role", get_args(Role), "viewer"),
            icon=_png(r, t, q, "icon"),
        ))
    return tuple(found)


def _merge(base: dict, over: dict, path: KeyPath, overridden: set[KeyPath]) -> dict:
    """Deep-merge `over` into a copy of `base`: tables merge, everything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, (*path, key), overridden)
        else:
            out[key] = value
            overridden.add((*path, key))
    return out


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        text = read_regular(file, MAX_MANIFEST_BYTES).decode("utf-8")
    except FileProblem as e:
        raise ManifestError(file, "", e.reason) from None
    except UnicodeDecodeError:
        raise ManifestError(file, "", "expected UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as e:  # ValueError: an int over 4300 digits
        raise ManifestError(file, "", f"invalid TOML: {e}") from None


def manifest_file(path: Path | str) -> Path:
    """The manifest file `path` names: itself, or the `wvwasi.toml` in it if it is a folder
    (or does not exist and is not a .toml file). Relative paths stay relative, for messages."""
    file = Path(path)
    kind = file_type(file)
    if kind == stat.S_IFDIR or (kind is None and file.suffix != ".toml"):
        return file / MANIFEST_NAME
    return file


def load_manifest(path: Path | str, *, platform: str | None = None) -> Manifest:
    """Read and validate `wvwasi.toml` (or the one in folder `path`) for `platform`.

    `platform` ("linux", "windows", "macos", or "web" for a static site; default the running
    OS) selects the `[target.X]` overlay merged over the base tables. Raises the first
    ManifestError.
    """
    result = check_manifest(path, platform=platform)
    if result.manifest is None:
        raise result.errors[0]
    return result.manifest


def check_manifest(path: Path | str, *, platform: str | None = None) -> ManifestCheck:
    """Like `load_manifest()`, but returns every problem found instead of raising the first:
    one per top-level key, section and service (`wvwasi check` lists them all)."""
    plat = platform or current_platform()
    if plat not in TARGETS:
        raise ValueError(f"platform must be one of {_choices(TARGETS)}, got {plat!r}")
    file = manifest_file(path)
    errors: list[ManifestError] = []
    services: dict[str, Service] = {}

    def attempt(read: Callable[..., T], *args: Any) -> T | None:
        try:
            return read(*args)
        except ManifestError as e:
            errors.append(e)
            return None

    try:
        raw = _read_toml(file)
        root = file.resolve().parent
        r = _Reader(file, root)
        r.check_strings(raw, ())
        if "webview" in raw:
            r.fail(("webview",), "unknown key (webview is set under [target.linux])")
        for key in raw:  # each unknown top-level key is a problem of its own
            attempt(r.table, {key: raw[key]}, (), (*_SECTIONS, "target"))
        targets = r.table(raw.pop("target", {}), ("target",), TARGETS)
        for name, overlay in targets.items():
            r.table(overlay, ("target", name),
                    _SECTIONS + (("webview",) if name == "linux" else ()))
    except ManifestError as e:
        return ManifestCheck(None, (*errors, e), MappingProxyType(services))
    overridden: set[KeyPath] = set()
    data = _merge(raw, targets.get(plat, {}), (), overridden)
    r = _Reader(file, root, f"target.{plat}", overridden)

    app = attempt(lambda: _app(r, r.get(data, (), "app", _REQUIRED)))
    ui = attempt(_ui, r, data.get("ui", {}))
    window = attempt(_window, r, data.get("window", {}), app.name if app else "")
    for name, raw_service in (attempt(r.mapping, data.get("services", {}), ("services",))
                              or {}).items():
        service = attempt(_service, r, name, raw_service)
        if service is not None:
            services[name] = service
    webview = attempt(r.choice, data, (), "webview", get_args(Webview), "gtk")
    bundle = attempt(_bundle, r, data.get("bundle", {}))
    limits = attempt(_app_limits, r, data.get("limits", {}))
    page = attempt(_page, r, data.get("page", {}))
    update = attempt(_update, r, data["update"]) if "update" in data else None
    if errors:
        return ManifestCheck(None, tuple(errors), MappingProxyType(services))
    manifest = Manifest(
        path=file.resolve(),
        root=root,
        app=app,  # type: ignore[arg-type]
        ui=ui,  # type: ignore[arg-type]
        window=window,  # type: ignore[arg-type]
        services=MappingProxyType(services),
        webview=webview,  # type: ignore[arg-type]
        bundle=bundle,  # type: ignore[arg-type]
        platform=plat,  # type: ignore[arg-type]
        limits=limits,  # type: ignore[arg-type]
        page=page,  # type: ignore[arg-type]
        update=update,
    )
    return ManifestCheck(manifest, (), manifest.services)


def manifest_for_wasm(
    source: Path | str,
    *,
    args: Iterable[str] = (),
    env: Iterable[tuple[str, str]] | Mapping[str, str] = (),
    preopens: Iterable[Preopen] = (),
    ipc: Ipc = "stream",
    kind: Kind = "task",
    limits: Limits = Limits(),
) -> Manifest:
    """A one-service manifest for a bare .wasm (`wvwasi exec`, conformance tests).

    The service is named after the file stem (sanitised); `path` is the .wasm and `root` its
    folder. No disk access: the UI folder it names need not exist.
    """
    if ipc not in get_args(Ipc):
        raise ValueError(f"ipc must be one of {_choices(get_args(Ipc))}, got {ipc!r}")
    if kind not in get_args(Kind):
        raise ValueError(f"kind must be one of {_choices(get_args(Kind))}, got {kind!r}")
    path = Path(source).absolute()
    name = re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-_")
    if not name[:1].isalpha():
        name = f"wasm-{name}".rstrip("-")
    pairs = tuple(env.items()) if isinstance(env, Mapping) else tuple(env)
    normalized = tuple(  # GuestPathError (a ValueError) for a path that cannot be a guest's
        Preopen(guestpath.normalize(p.guest), p.host, p.mode) for p in preopens
    )
    service = Service(
        name=name, source=path, kind=kind, args=tuple(args), env=pairs, ipc=ipc,
        preopens=normalized, limits=limits,
    )
    return Manifest(
        path=path,
        root=path.parent,
        app=AppInfo(name=name, identifier=f"dev.wvwasi.exec.{name.replace('_', '-')}"),
        ui=UI(dir=path.parent / "ui"),
        window=Window(title=name),
        services=MappingProxyType({name: service}),
        platform=current_platform(),
    )


# --- writing ---------------------------------------------------------------------------------

#: Fields not written under their own name: Manifest's come from where the file is and which
#: target it is loaded for (`webview` is written under [target.linux]); a service's name is
#: its table's key.
_NOT_WRITTEN: Mapping[type, tuple[str, ...]] = MappingProxyType({
    Manifest: ("path", "root", "platform", "webview"),
    Service: ("name",),
})
Relocate = Callable[[str, Path], str]


def dump_manifest(manifest: Manifest, relocate: Relocate | None = None) -> str:
    """`manifest` as `wvwasi.toml` text that `load_manifest(folder, platform=manifest.platform)`
    reads back equal (with `path`/`root` those of where it is written).

    The text is for that one target: its overlay is already applied, so no `[target.X]` but
    `[target.linux] webview`. `relocate(key, path)` spells each path field (`key` is the key
    path, e.g. `services.wc.source`); the default writes it relative to `manifest.root`, so the
    text loads equal from the manifest's own folder. Every field is written, defaults included,
    except empty arrays. Only the packager writes manifests: tomli_w is not in frozen apps.
    """
    import tomli_w

    if relocate is None:
        def relocate(_key: str, path: Path) -> str:
            return Path(os.path.relpath(path, manifest.root)).as_posix()
    data = _table(manifest, "", relocate)
    if manifest.platform == "linux":
        data["target"] = {"linux": {"webview": manifest.webview}}
    elif manifest.webview != Manifest.webview:
        raise ValueError(f"webview {manifest.webview!r} is a Linux setting, the manifest is "
                         f"for {manifest.platform}")
    return tomli_w.dumps(data)


def _menu_item(item: MenuItem) -> dict[str, Any]:
    """A `[[window.menu]]` entry with only the keys of its kind, as it is read."""
    if item.separator:
        return {"separator": True}
    if item.id is not None:
        return {"label": item.label, "id": item.id}
    return {"label": item.label, "items": [_menu_item(i) for i in item.items]}


def _table(obj: Any, key: str, relocate: Relocate) -> dict[str, Any]:
    skip = _NOT_WRITTEN.get(type(obj), ())
    out: dict[str, Any] = {}
    for f in fields(obj):
        if f.name not in skip:
            value = _value(getattr(obj, f.name), f"{key}.{f.name}".lstrip("."), relocate)
            if value is not None:
                out[f.name] = value
    return out


def _value(value: Any, key: str, relocate: Relocate) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Endpoint):
        return str(value)  # written as it is read: "host:port"
    if isinstance(value, MenuItem):
        return _menu_item(value)
    if isinstance(value, Path):
        return relocate(key, value)
    if is_dataclass(value):
        return _table(value, key, relocate)
    if isinstance(value, Mapping):
        return {k: _value(v, f"{key}.{k}", relocate) for k, v in value.items()}
    if value == ():
        return None  # every array's default: an empty tuple of pairs (env) is no array
    if isinstance(value, tuple) and all(isinstance(v, tuple) for v in value):
        return {k: _value(v, f"{key}.{k}", relocate) for k, v in value}  # pairs: env
    if isinstance(value, tuple):
        return [_value(v, f"{key}[{i}]", relocate) for i, v in enumerate(value)]
    raise TypeError(f"{key}: cannot write {type(value).__name__} to TOML")

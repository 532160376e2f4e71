"""Freezing the runtime with PyInstaller, once per (wvwasi version, OS, arch, backend, sources).

The frozen runtime (`runtime/frozen_main.py` and what it imports) is the same for every app, so
it is built once and cached under the user cache folder (`wvwasi info` shows where):

    <cache>/runtime/<version>-<os>-<arch>-<backend>-<digest>/
      onedir/wvwasi-runtime[.exe] + _internal/    (formats that install a folder)
      onefile/wvwasi-runtime[.exe]                (the `onefile` format; built on demand)
      work/                                        PyInstaller's work folder, runtime.spec

`digest` hashes the runtime's sources, the spec, this module and the versions of Python,
PyInstaller and the bundled libraries, so any change freezes anew. Each app build copies the
runtime and adds its payload (see stage.py): a rebuild after a UI edit never runs PyInstaller.

What is left out: the packager, PyInstaller, tkinter, Pillow, rich; the other webview backend; for
Qt the Qt modules pywebview does not use and non-English translations; for GTK the whole system
GTK/WebKitGTK stack, which packages depend on instead (Debian: gir1.2-webkit2-4.1 ...).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pkgutil
import platform
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import wvwasi
import wvwasi.runtime
from wvwasi import __version__
from wvwasi.packager import icons, lock, wincross
from wvwasi.packager.caches import cache_dir
from wvwasi.packager.formats import Platform, host_arch
from wvwasi.packager.tools import BuildError, run
from wvwasi.packager.wincross import WindowsPython
from wvwasi.runtime.manifest import current_platform
from wvwasi.templates import ROOT as TEMPLATES

RUNTIME_NAME = "wvwasi-runtime"
#: Linux webview backend -> (distribution, module) a frozen runtime for it needs.
BACKEND_PACKAGES = {"gtk": ("PyGObject", "gi"),
                    "qt": ("PyQt6-WebEngine", "PyQt6.QtWebEngineWidgets")}
RUNTIME_SOURCES = Path(wvwasi.runtime.__file__).resolve().parent
ENTRY = RUNTIME_SOURCES / "frozen_main.py"

#: Never in an app: the build tool and what only it uses.
ALWAYS_EXCLUDE = (
    "wvwasi.packager", "wvwasi.templates", "PyInstaller", "tkinter", "_tkinter", "turtle",
    "idlelib", "PIL", "rich", "tomli_w", "watchfiles", "pytest", "_pytest", "playwright", "pip",
    "setuptools", "pkg_resources", "distutils", "ensurepip", "venv", "lib2to3", "pydoc_data",
    "IPython", "numpy", "wvwasi.runtime.__main__", "_pydecimal", "pydoc", "doctest",
    # East Asian codecs (the app's Python side only speaks UTF-8)
    "_codecs_cn", "_codecs_hk", "_codecs_iso2022", "_codecs_jp", "_codecs_kr", "_codecs_tw",
    "_multibytecodec",
)
#: pywebview backends no wvwasi runtime uses (Windows/macOS keep their native one).
_UNUSED_WEBVIEW = ("webview.platforms.android", "webview.platforms.cef",
                   "webview.platforms.mshtml")
_QT_BINDINGS = ("PyQt6", "PyQt5", "PySide6", "PySide2", "qtpy")
#: PyQt6 modules pywebview's Qt backend imports; every other one is excluded.
_QT_KEEP = (
    "sip", "QtCore", "QtGui", "QtWidgets", "QtNetwork", "QtWebChannel", "QtWebEngineCore",
    "QtWebEngineWidgets", "QtPrintSupport", "QtOpenGL", "QtOpenGLWidgets", "QtPositioning",
)
#: PyInstaller runtime hooks that point GTK at bundled copies (dropped: GTK is the system's).
_GTK_RUNTIME_HOOKS = ("pyi_rth_gi", "pyi_rth_gio", "pyi_rth_glib", "pyi_rth_gdkpixbuf",
                      "pyi_rth_gtk")
#: The libraries whose dependency closure the GTK runtime takes from the system.
GTK_SYSTEM_ROOTS = ("libwebkit2gtk-4.1.so.0", "libgtk-3.so.0", "libgirepository-1.0.so.1")


@dataclass(frozen=True)
class Runtime:
    """A cached frozen runtime."""

    onedir: Path  # the folder holding `executable`
    executable: str  # file name of the runtime executable inside onedir
    onefile: Path | None  # the single-file runtime, if asked for
    key: str  # the cache entry's name (or the prebuilt runtime's path)


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def source_digest(backend: str, versions: tuple[str, ...] | None = None) -> str:
    """Hash of everything that makes the frozen runtime what it is (`versions`: of the Python
    and the libraries it freezes with, when that is not this Python: a cross-freeze)."""
    h = hashlib.sha256()
    files = sorted(p for p in RUNTIME_SOURCES.rglob("*") if p.is_file()
                   and p.suffix in (".py", ".js", ".ts") and "__pycache__" not in p.parts)
    files += [Path(wvwasi.__file__), TEMPLATES / "runtime.spec", Path(__file__), icons.DEFAULT_ICON]
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    if versions is None:
        versions = (sys.version, *map(_dist_version, bundled_dists(backend)))
    h.update(json.dumps(versions).encode())
    return h.hexdigest()[:12]


def bundled_dists(backend: str) -> tuple[str, ...]:
    """The distributions whose versions make a frozen runtime: PyInstaller and what it bundles."""
    # notifications (runtime/notify.py); Windows: also the tray (runtime/window/webview2.py)
    own = ("jeepney",) if backend in ("gtk", "qt") else ("pystray", "six")
    return ("pyinstaller", "pyinstaller-hooks-contrib", "wasmtime", "pywebview", "aiohttp",
            "platformdirs", "cryptography",  # the updater's signature check
            BACKEND_PACKAGES.get(backend, ("pythonnet", ""))[0], *own)


def require_backend(backend: str) -> None:
    """BuildError naming the extra to install when `backend`'s Python package is missing."""
    dist, module = BACKEND_PACKAGES.get(backend, ("", ""))
    try:
        found = not module or importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package
        found = False
    if not found:
        raise BuildError("freeze", f"the {backend} runtime needs {dist}: "
                         f"pip install 'wvwasi[{backend}]'")


def runtime_key(backend: str) -> str:
    """`<version>-<os>-<arch>-<backend>-<digest>`: the cache entry for this machine."""
    return (f"{__version__}-{current_platform()}-{host_arch().name}-{backend}-"
            f"{source_digest(backend)}")


def runtime_backend(webview: str, platform_name: Platform) -> str:
    """The frozen runtime's webview backend: the manifest's on Linux, else pywebview's native
    one ("native": WebView2 on Windows, WebKit on macOS)."""
    return webview if platform_name == "linux" else "native"


def executable_name(platform_name: Platform) -> str:
    return RUNTIME_NAME + (".exe" if platform_name == "windows" else "")


def ensure_runtime(
    backend: str, *, onefile: bool = False, log: Callable[[str], None] = lambda _m: None,
    cross: WindowsPython | None = None,
) -> Runtime:
    """The cached runtime for `backend` on this machine (with `cross`: the Windows runtime,
    frozen under Wine with that CPython), freezing what is missing."""
    if cross is None:
        key, system = runtime_key(backend), current_platform()
    else:
        key, system = (f"{__version__}-windows-x86_64-{backend}-"
                       f"{source_digest(backend, (cross.key, *cross.wheels))}"), "windows"
    key_dir = cache_dir() / "runtime" / key
    exe = executable_name(system)
    key_dir.mkdir(parents=True, exist_ok=True)
    with _locked(key_dir / ".lock"):
        if not (key_dir / "onedir" / exe).is_file():
            if cross is None:
                require_backend(backend)
                if notes := lock.drift(bundled_dists(backend)):
                    log(f"note: not the locked versions ({', '.join(notes)}); the runtime is "
                        f"reproducible when installed with pip's -c {lock.LOCK_FILE}")
            log(f"freezing the {system} {backend} runtime (onedir; once per wvwasi version)")
            _freeze(backend, "onedir", key_dir, cross, log)
            _prune_older(key_dir)
        if onefile and not (key_dir / "onefile" / exe).is_file():
            log(f"freezing the {system} {backend} runtime (onefile; once per wvwasi version)")
            _freeze(backend, "onefile", key_dir, cross, log)
    single = key_dir / "onefile" / exe if onefile else None
    return Runtime(key_dir / "onedir", exe, single, key_dir.name)


def _prune_older(key_dir: Path) -> None:
    """Remove entries for the same version/OS/arch/backend frozen from other sources (edited
    runtime code during development): only the newest is ever used again."""
    prefix = key_dir.name.rsplit("-", 1)[0] + "-"
    for entry in key_dir.parent.iterdir():
        if entry != key_dir and entry.name.startswith(prefix):
            shutil.rmtree(entry, ignore_errors=True)


#: pystray's backends the Windows runtime leaves out (it uses `pystray._win32`).
_PYSTRAY_OTHERS = ("_darwin", "_gtk", "_appindicator", "_xorg", "_dummy", "_util.gtk",
                   "_util.notify_dbus")


def freeze_config(backend: str, mode: str, work: Path,
                  system: Platform | None = None) -> dict[str, object]:
    """The settings templates/runtime.spec reads (freeze.json) to freeze for `system` (default:
    this one)."""
    system = system or current_platform()
    excludes = [*ALWAYS_EXCLUDE, *_UNUSED_WEBVIEW]
    if system != "windows":
        excludes += ["webview.platforms.winforms", "webview.platforms.edgechromium"]
    if system != "macos":
        excludes += ["webview.platforms.cocoa"]
    if system == "windows":  # pystray's other backends (PIL: only its macOS one draws)
        excludes += [f"pystray.{b}" for b in _PYSTRAY_OTHERS] + ["PIL"]
    drop_data: list[str] = []
    keep_data: list[str] = []
    hidden = [f"webview.platforms.{backend}"]
    if backend == "native":  # pywebview's own backend on Windows (WebView2) / macOS (WebKit)
        excludes += [*_QT_BINDINGS, "gi", "cairo", "webview.platforms.qt",
                     "webview.platforms.gtk"]
        hidden = (["webview.platforms.winforms", "webview.platforms.edgechromium"]
                  if system == "windows" else ["webview.platforms.cocoa"])
    elif backend == "gtk":
        excludes += [*_QT_BINDINGS, "webview.platforms.qt", "wvwasi.runtime.window.qt"]
    else:
        excludes += ["gi", "cairo", "webview.platforms.gtk", "wvwasi.runtime.window.gtk",
                     *(b for b in _QT_BINDINGS if b not in ("PyQt6", "qtpy"))]
        excludes += [f"PyQt6.{m}" for m in _pyqt6_modules() if m not in _QT_KEEP]
        drop_data = ["PyQt6/Qt6/translations/", "PyQt6/Qt6/qml/"]
        keep_data = ["PyQt6/Qt6/translations/qtwebengine_locales/en-US.pak"]
    gtk_linux = backend == "gtk" and system == "linux"
    if gtk_linux:  # GTK's generated caches/symlinks: the system's own are used
        drop_data += ["lib/gdk-pixbuf/", "share/"]
    icon: str | None = None
    if system == "windows":
        icon = str(icons.write_ico(icons.load_icon(None), work / "icon.ico"))
    elif system == "macos":
        icon = str(icons.write_icns(icons.load_icon(None), work / "icon.icns"))
    return {
        "entry": str(ENTRY),
        "name": RUNTIME_NAME,
        "mode": mode,
        "excludes": excludes,
        "hiddenimports": hidden,
        "system_libs": sorted(system_stack_libs(GTK_SYSTEM_ROOTS)) if gtk_linux else [],
        "drop_system_data": gtk_linux,
        "drop_data_prefixes": drop_data,
        "keep_data_prefixes": keep_data,
        "drop_runtime_hooks": list(_GTK_RUNTIME_HOOKS) if gtk_linux else [],
        "console": system == "linux",
        "strip": system == "linux",
        "icon": icon,
        # documents and URLs a macOS launch was asked to open arrive as Apple events: the
        # bootloader turns those of the launch into argv (runtime/window/wkwebview.py)
        "argv_emulation": system == "macos",
    }


def _pyqt6_modules() -> list[str]:
    try:
        import PyQt6
    except ImportError:
        return []
    return [m.name for m in pkgutil.iter_modules(PyQt6.__path__)]


def system_stack_libs(roots: tuple[str, ...]) -> set[str]:
    """Sonames of `roots`, their plugin modules (GIO, gdk-pixbuf loaders) and everything they
    link (found with ldconfig and ldd)."""
    step = "freeze"
    paths: dict[str, str] = {}
    for line in run(["ldconfig", "-p"], step=step).splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and ("x86-64" in m[2] or platform.machine() != "x86_64"):
            paths.setdefault(m[1], m[3])
    missing = [r for r in roots if r not in paths]
    if missing:
        raise BuildError(step, f"{', '.join(missing)} not found: the GTK runtime needs the "
                         "system's WebKitGTK (apt-get install gir1.2-webkit2-4.1 gir1.2-gtk-3.0 "
                         "libgirepository-1.0-1)")
    libdir = Path(paths[roots[0]]).parent
    files = [paths[r] for r in roots]
    files += map(str, sorted(libdir.glob("gio/modules/*.so")))
    files += map(str, sorted(libdir.glob("gdk-pixbuf-2.0/*/loaders/*.so")))
    names = set(roots)
    for line in run(["ldd", *files], step=step).splitlines():
        m = re.match(r"\s*(\S+) => /", line)
        if m:
            names.add(m[1])
    return names


def _freeze(backend: str, mode: str, key_dir: Path, cross: WindowsPython | None,
            log: Callable[[str], None]) -> None:
    """Run PyInstaller for one mode (here, or under Wine with `cross`) and move the result into
    the cache entry."""
    work = key_dir / "work"
    work.mkdir(exist_ok=True)
    src = _shadow_sources(work / "src")
    shutil.copyfile(TEMPLATES / "runtime.spec", work / "runtime.spec")
    system = "windows" if cross else current_platform()
    path = wincross.windows_path if cross else str
    config = freeze_config(backend, mode, work, system)
    config["entry"] = path(src / "wvwasi" / "runtime" / ENTRY.name)
    config["pathex"] = [path(src)]
    if config["icon"]:
        config["icon"] = path(Path(str(config["icon"])))
    (work / "freeze.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    dist = key_dir / f".dist-{mode}-{os.getpid()}"
    shutil.rmtree(dist, ignore_errors=True)
    try:
        if cross is not None:
            wincross.pyinstaller(cross, work / "runtime.spec", dist, work / "build", log)
        else:
            run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
                 "--distpath", dist, "--workpath", work / "build", work / "runtime.spec"],
                step=f"freeze ({backend} {mode})",
                env={"PYTHONHASHSEED": "0", "PYTHONPATH": str(src)})
        built = dist / RUNTIME_NAME
        if mode == "onedir":
            os.replace(built, key_dir / "onedir")
        else:
            (key_dir / "onefile").mkdir(exist_ok=True)
            exe = executable_name(system)
            os.replace(built.with_name(exe), key_dir / "onefile" / exe)
    finally:
        shutil.rmtree(dist, ignore_errors=True)


def _shadow_sources(dest: Path) -> Path:
    """A plain `wvwasi/` + `wvwasi/runtime/` tree for PyInstaller, which cannot follow the
    editable install's import hook (and must not see the packager)."""
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "wvwasi").mkdir(parents=True)
    shutil.copy2(wvwasi.__file__, dest / "wvwasi" / "__init__.py")  # mtimes kept, as below
    shutil.copytree(RUNTIME_SOURCES, dest / "wvwasi" / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across processes (two builds never freeze at once)."""
    with open(path, "a+b") as f:
        if sys.platform == "win32":
            import msvcrt

            f.seek(0)
            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

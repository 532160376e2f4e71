"""The Windows backend: Microsoft Edge WebView2 through pywebview's `edgechromium` GUI
(pythonnet). Windows default.

WebView2 is a system runtime, not part of the app: the installers provide it (`[bundle.windows]
webview2`, packager/formats/_webview2.py), and an app started without it shows a message box
saying what is missing and what to do — a windowed app has no console to print to.
"""

from __future__ import annotations

import atexit
import functools
import struct
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from wvwasi.runtime.manifest import MenuItem
from wvwasi.runtime.window.tray import TrayIcon

GUI = "edgechromium"
#: WebView2's developer tools run in the app's own process.
LOCAL_INSPECTOR = True
#: The runtime's EdgeUpdate client key (its `pv` value is the installed version).
CLIENT_KEY = r"SOFTWARE\Microsoft\EdgeUpdate\Clients\{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}"
#: Where the runtime registers: (root, key), machine-wide (32-bit view, then native) or per user.
LOCATIONS = (("HKLM", CLIENT_KEY.replace("SOFTWARE", r"SOFTWARE\WOW6432Node")),
             ("HKLM", CLIENT_KEY), ("HKCU", CLIENT_KEY))
DOWNLOAD_PAGE = "https://developer.microsoft.com/microsoft-edge/webview2/"
MISSING = ("This app needs the Microsoft Edge WebView2 Runtime, which is not installed on this "
           "computer.\n\nInstall the Evergreen WebView2 Runtime from " + DOWNLOAD_PAGE +
           " (or run the app's installer again), then start the app again.")

#: Reads one registry string: (root name, key, value name) -> value or None.
RegistryReader = Callable[[str, str, str], str | None]


def installed_version(read: RegistryReader) -> str | None:
    """The installed WebView2 runtime's version, None if there is none (`0.0.0.0` = removed)."""
    for root, key in LOCATIONS:
        version = read(root, key, "pv")
        if version and version != "0.0.0.0":
            return version
    return None


def _read_registry(root: str, key: str, name: str) -> str | None:
    import winreg

    hive = winreg.HKEY_LOCAL_MACHINE if root == "HKLM" else winreg.HKEY_CURRENT_USER
    try:
        with winreg.OpenKey(hive, key) as handle:
            value, _ = winreg.QueryValueEx(handle, name)
    except OSError:
        return None
    return value if isinstance(value, str) else None


def _message_box(title: str, text: str) -> None:
    import ctypes

    mb_iconerror = 0x10
    ctypes.windll.user32.MessageBoxW(None, text, title, mb_iconerror)


def prepare(read: RegistryReader | None = None,
            show: Callable[[str, str], None] | None = None) -> None:
    """Check that WebView2 and pythonnet are there; if not, tell the user in a message box and
    raise ImportError (the app then exits with status 2 and the reason on stderr)."""
    if installed_version(read or _read_registry) is None:
        (show or _message_box)("WebView2 Runtime missing", MISSING)
        raise ImportError("the Microsoft Edge WebView2 Runtime is not installed: install it "
                          f"from {DOWNLOAD_PAGE}")
    if read is None:  # only on Windows: pythonnet is pywebview's bridge to WebView2
        try:
            import clr  # noqa: F401
        except Exception as e:
            (show or _message_box)("App damaged", f"This app cannot start ({e}). Reinstall it.")
            raise ImportError(f"the WebView2 webview cannot load ({e}): install pywebview with "
                              "pythonnet (pip install pywebview)") from None


def cancel_dialogs() -> None:
    """Nothing to do: closing the window ends an open WinForms folder dialog with it."""


def listen_for_opens(forward: Callable[[list[str]], None]) -> None:
    """Nothing to do: documents and URLs arrive on the command line (a later launch's, through
    the single-instance channel)."""


#: The notification area's limits (NOTIFYICONDATAW's fields, NUL included): the tooltip's,
#: a notification's title's and its body's characters; longer text is cut, ending in "…".
TIP_CHARS, INFO_TITLE_CHARS, INFO_CHARS = 128, 64, 256
#: Seconds to wait for the icon's thread to add the icon.
SHOW_TIMEOUT = 10.0


class Tray(TrayIcon):
    """The app's icon in the Windows notification area and its menu: pystray's win32 backend
    (ctypes: Shell_NotifyIconW on a hidden window whose message loop runs on a thread of its own,
    beside pywebview's UI thread). A left click calls `on_click(None)`; the right-click menu
    (TrackPopupMenuEx) a menu item's id. `notify()` shows a notification from the icon (a
    balloon; Windows 10 and 11 show it as a toast)."""

    def __post_init__(self) -> None:
        import pystray

        self.shown = threading.Event()  # set once the icon was added, or failed to be
        self.error: str | None = None  # why it was not added
        self.icon = _checked_icon_class()(
            "wvwasi", _IcoImage(self.icon_file), _cut(self.title, TIP_CHARS),
            pystray.Menu(pystray.MenuItem("", lambda: self._clicked(None), default=True,
                                          visible=False), *self._build(self.items)))
        self.icon.failed = self._failed
        self.icon.run_detached(self._setup)
        with _lock:
            _trays.append(self)  # notifications come from the newest

    def _setup(self, icon: Any) -> None:
        if self.error is not None:  # the icon's thread could not start
            return
        try:
            icon.visible = True
        except OSError as e:
            self._failed(e)
        finally:
            self.shown.set()

    def _failed(self, error: OSError) -> None:
        self.error = str(error)
        print(f"warning: no tray icon: {error}", file=sys.stderr)
        self.shown.set()

    def _build(self, items: tuple[MenuItem, ...]) -> list[Any]:
        import pystray

        entries = []
        for item in items:
            label = item.label.replace("&", "&&")  # "&" would underline the next letter
            if item.separator:
                entries.append(pystray.Menu.SEPARATOR)
            elif item.id is None:
                entries.append(pystray.MenuItem(label, pystray.Menu(*self._build(item.items))))
            else:  # a partial, which pystray calls with (icon, item) as it is
                entries.append(pystray.MenuItem(label, functools.partial(self._item, item.id)))
        return entries

    def _item(self, ident: str, _icon: Any, _item: Any) -> None:
        self._clicked(ident)

    def notify(self, title: str, body: str) -> None:
        """Show a notification from the icon (from any thread). OSError if Windows refused it
        or the icon could not be added."""
        if not self.shown.wait(SHOW_TIMEOUT):
            raise OSError(f"the tray icon was not added within {SHOW_TIMEOUT:g} s")
        if self.error is not None:
            raise OSError(self.error)
        # an empty body would remove the notification instead
        self.icon.notify(_cut(body, INFO_CHARS) or " ", _cut(title, INFO_TITLE_CHARS))

    def hide(self) -> None:
        """Remove the icon and end its thread (from any thread)."""
        self.shown.wait(SHOW_TIMEOUT)
        if self.error is None:
            self.icon.visible = False
        self.icon.stop()
        with _lock:
            if self in _trays:
                _trays.remove(self)


#: The trays shown, newest last.
_trays: list[Tray] = []
_lock = threading.RLock()


def notify(app_name: str, icon: Path | None, title: str, body: str) -> None:
    """Show a notification from the app's tray icon; without one (`[app] tray = false`), from
    an icon without a menu added for notifications, removed when the app ends. OSError if
    Windows refused it."""
    with _lock:
        if _trays:
            tray = _trays[-1]
        else:
            tray = Tray(app_name, icon, (), lambda _ident: None)
            atexit.register(tray.hide)
    tray.notify(title, body)


def _cut(text: str, size: int) -> str:
    """`text` fitting a `size`-character field with its NUL: cut, ending in "…", if longer."""
    return text if len(text) < size else text[:size - 2] + "…"


@functools.cache
def _checked_icon_class() -> type:
    """pystray's win32 Icon whose adding of the icon and showing of a notification raise
    OSError when Shell_NotifyIconW fails (pystray ignores its result; it also modifies the icon
    before adding it, a call that fails by design), and whose message loop runs on a daemon
    thread (pystray's would keep the app from ending) that reports a failure to start to
    `failed`."""
    import ctypes

    import pystray
    from pystray._util import win32

    class CheckedIcon(pystray.Icon):  # type: ignore[misc,valid-type]
        failed: Callable[[OSError], None] = print

        def _run_detached(self) -> None:
            threading.Thread(target=self._loop, name="wvwasi-tray-icon", daemon=True).start()

        def _loop(self) -> None:
            try:
                self._run()
            except OSError as e:  # its hidden window could not be made
                self.failed(OSError(f"Windows refused the notification-area icon's window "
                                    f"({e}): is this a desktop session?"))
                self._mark_ready()  # ends pystray's setup thread, which waits for this

        def _message(self, code: int, flags: int, **fields: Any) -> None:
            data = win32.NOTIFYICONDATAW(cbSize=ctypes.sizeof(win32.NOTIFYICONDATAW),
                                         hWnd=self._hwnd, uFlags=flags, **fields)
            if win32.Shell_NotifyIcon(code, data):
                return
            if code == win32.NIM_ADD:
                raise OSError("Windows refused the notification-area icon (Shell_NotifyIconW "
                              "failed: is the taskbar running?)")
            if flags & win32.NIF_INFO and fields.get("szInfo"):
                raise OSError("Windows refused the notification (Shell_NotifyIconW failed: "
                              "the app's notification-area icon is gone)")

    return CheckedIcon


class _IcoImage:
    """The app's PNG icon as pystray saves its image (`save(file, format="ICO")`): an .ico
    holding the PNG itself (Windows Vista and later read PNG icons), so no image library is
    bundled. Without an icon, a plain square."""

    def __init__(self, png: Path | None) -> None:
        self.png = png.read_bytes() if png is not None else _square_png(32, (0x3b, 0x6e, 0xa8))

    def save(self, file: IO[bytes], format: str) -> None:
        width, height = struct.unpack(">II", self.png[16:24])  # the IHDR chunk's
        file.write(struct.pack("<HHH", 0, 1, 1))  # reserved, type 1 (icon), one image
        file.write(struct.pack("<BBBBHHII", width % 256, height % 256, 0, 0, 1, 32,
                               len(self.png), 6 + 16))  # 0 stands for 256 pixels
        file.write(self.png)


def _square_png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A square (`size` pixels a side) PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = (b"\0" + bytes(rgb) * size) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))

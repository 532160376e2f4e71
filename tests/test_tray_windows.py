"""The Windows tray icon and notifications (runtime/window/webview2.py, pystray's win32 backend)
under the real Windows CPython in Wine: test_windows_pytest.py runs this file there (on an Xvfb
screen, where Wine's explorer keeps the notification area). The icon is added, clicked and
removed through Windows' own calls and window messages: the notification-area callback message
pystray's hidden window asks for, and the keys that drive the real popup menu
(TrackPopupMenuEx). Linux runs only the icon-file test; the Linux trays are in
test_desktop_window.py."""

from __future__ import annotations

import ctypes
import io
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from wvwasi.runtime import notify
from wvwasi.runtime.manifest import MenuItem
from wvwasi.runtime.notify import Notifier, NotifyError
from wvwasi.runtime.window import webview2

windows = pytest.mark.skipif(sys.platform != "win32", reason="Windows only: run under Windows "
                             "CPython in Wine by test_windows_pytest.py")
NIM_MODIFY, NIF_TIP = 1, 0x4
WM_LBUTTONUP, WM_RBUTTONUP, WM_KEYDOWN = 0x202, 0x205, 0x100
VK_RETURN, VK_RIGHT, VK_DOWN = 0x0D, 0x27, 0x28
MENU = (MenuItem("Open & show", "open"), MenuItem(separator=True),
        MenuItem("More", items=(MenuItem("About", "about"),)))


def test_the_icon_file_is_the_png_in_an_ico(tmp_path: Path):
    from PIL import Image

    png = tmp_path / "icon.png"
    Image.new("RGBA", (48, 40), (200, 10, 10, 255)).save(png)
    for source, size, colour in ((png, (48, 40), (200, 10, 10, 255)),
                                 (None, (32, 32), (0x3b, 0x6e, 0xa8, 255))):
        ico = io.BytesIO()
        webview2._IcoImage(source).save(ico, "ICO")
        with Image.open(io.BytesIO(ico.getvalue())) as image:
            assert image.format == "ICO" and image.size == size
            assert image.convert("RGBA").getpixel((0, 0)) == colour
        if source is not None:  # the PNG itself, unchanged, after the 22-byte header
            assert ico.getvalue()[22:] == png.read_bytes()


class Clicks:
    """What `on_click` received, and an event per call."""

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self.arrived = threading.Semaphore(0)

    def __call__(self, ident: str | None) -> None:
        self.ids.append(ident)
        self.arrived.release()

    def next(self) -> str | None:
        assert self.arrived.acquire(timeout=20), f"no click arrived (so far: {self.ids})"
        return self.ids[-1]


def _post(hwnd: int, message: int, wparam: int, lparam: int) -> None:
    post = ctypes.windll.user32.PostMessageW
    post.argtypes = (ctypes.c_void_p, ctypes.c_uint, ctypes.c_size_t, ctypes.c_ssize_t)
    assert post(hwnd, message, wparam, lparam)


def _icon_exists(hwnd: int) -> bool:
    """Whether the notification area has the icon of window `hwnd` (NIM_MODIFY of its tip
    succeeds only for an icon that was added)."""
    from pystray._util import win32

    data = win32.NOTIFYICONDATAW(cbSize=ctypes.sizeof(win32.NOTIFYICONDATAW), hWnd=hwnd,
                                 uFlags=NIF_TIP, szTip="probe")
    return bool(win32.Shell_NotifyIcon(NIM_MODIFY, data))


@pytest.fixture
def no_trays() -> Iterator[None]:
    yield
    for tray in list(webview2._trays):
        tray.hide()
    assert webview2._trays == []


@windows
def test_the_icon_is_added_its_clicks_arrive_and_hide_removes_it(no_trays: None,
                                                                    tmp_path: Path):
    from pystray._util import win32

    png = tmp_path / "icon.png"
    png.write_bytes(webview2._square_png(48, (200, 10, 10)))
    clicks = Clicks()
    tray = webview2.Tray("Notes " + "x" * 200, png, MENU, clicks)
    assert tray.shown.wait(20) and tray.error is None
    hwnd = tray.icon._hwnd
    assert _icon_exists(hwnd)
    # the notification-area callback, as Windows posts it for a click on the icon
    _post(hwnd, win32.WM_NOTIFY, 0, WM_LBUTTONUP)
    assert clicks.next() is None
    # a right click opens the real popup menu (modal, on the icon's thread); keys choose in it
    _post(hwnd, win32.WM_NOTIFY, 0, WM_RBUTTONUP)
    for key in (VK_DOWN, VK_RETURN):
        _post(hwnd, WM_KEYDOWN, key, 0)
    assert clicks.next() == "open"
    _post(hwnd, win32.WM_NOTIFY, 0, WM_RBUTTONUP)
    for key in (VK_DOWN, VK_DOWN, VK_RIGHT, VK_RETURN):  # the separator is skipped
        _post(hwnd, WM_KEYDOWN, key, 0)
    assert clicks.next() == "about"
    assert clicks.ids == [None, "open", "about"]
    tray.notify("From the tray", "a body")  # its own icon: no second one
    assert webview2._trays == [tray]
    tray.hide()
    assert not _icon_exists(hwnd)
    assert not tray.icon._running
    with pytest.raises(OSError, match="refused the notification "):
        tray.notify("gone", "the icon was removed")


@windows
def test_notifications_without_a_tray_and_their_bounds(no_trays: None):
    notifier = Notifier("Notes", None)
    hostile = 'Saved "x" & \\ <b>bold</b>\r\n' + "é" * 200  # cut to the area's 63 and 255
    assert notifier.notify(hostile, hostile + "\tafter a tab") == 0
    assert len(webview2._trays) == 1  # an icon for notifications, without a menu
    hwnd = webview2._trays[0].icon._hwnd
    assert _icon_exists(hwnd) and webview2._trays[0].icon._menu_handle is None
    assert notifier.notify("Second", "") == 0  # the same icon
    assert len(webview2._trays) == 1
    with pytest.raises(NotifyError, match="at most 256") as e:
        notifier.notify("x" * (notify.MAX_TITLE + 1), "")
    assert e.value.kind == "invalid"
    with pytest.raises(NotifyError) as e:
        notifier.notify("t", "x" * (notify.MAX_BODY + 1))
    assert e.value.kind == "invalid"
    with pytest.raises(NotifyError, match="no NUL") as e:  # as on Linux, where D-Bus cannot
        notifier.notify("t", "before\0after")
    assert e.value.kind == "invalid"
    for i in range(notify.RATE_COUNT - 2):
        notifier.notify(f"n{i}", "x" * notify.MAX_BODY)
    with pytest.raises(NotifyError, match="at most 10 notifications per 10 s") as e:
        notifier.notify("one too many", "")
    assert e.value.kind == "limit"


@windows
def test_an_icon_windows_refuses_is_unavailable_and_ends_its_threads(
        no_trays: None, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]):
    from pystray._util import win32

    def refuse(*args: object) -> None:  # as CreateWindowExW fails without a desktop
        raise ctypes.WinError(5)

    monkeypatch.setattr(win32, "CreateWindowEx", refuse)
    with pytest.raises(NotifyError, match="refused the notification-area icon's window") as e:
        Notifier("Notes", None).notify("Saved", "")
    assert e.value.kind == "unavailable"
    assert capfd.readouterr().err.count("warning: no tray icon:") == 1
    tray = webview2._trays[0]
    tray.hide()  # at once: nothing waits for the icon any more
    tray.icon._setup_thread.join(5)
    assert not tray.icon._setup_thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name == "wvwasi-tray-icon"]

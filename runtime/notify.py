"""Desktop notifications (`wvwasi.notify`): on Linux through the desktop's notification server,
on Windows from the app's notification-area icon.

Linux: the freedesktop.org Notifications D-Bus interface (what GNOME Shell, KDE Plasma, dunst,
mako and xfce4-notifyd serve) is called with jeepney, a small pure-Python D-Bus client that does
not depend on the window's backend (GTK or Qt). Windows: a balloon from the tray icon (pystray,
runtime/window/webview2.py), which Windows 10 and 11 show as a toast. macOS: AppleScript's
`display notification` through /usr/bin/osascript, the text inside escaped string literals.
Elsewhere the call fails with NotifyError("unavailable").
"""

from __future__ import annotations

import html
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

#: Bounds on one notification: characters of its title and of its body.
MAX_TITLE = 256
MAX_BODY = 4096
#: At most this many notifications per RATE_WINDOW seconds (a page cannot flood the desktop).
RATE_COUNT = 10
RATE_WINDOW = 10.0
#: Seconds to wait for the notification server's answer.
TIMEOUT = 5.0
_SERVER = "org.freedesktop.Notifications"


class NotifyError(Exception):
    """A notification that was not shown; `kind` is the page's WasiError kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Notifier:
    """Shows the app's notifications, at most RATE_COUNT per RATE_WINDOW seconds."""

    def __init__(self, app_name: str, icon: Path | None = None) -> None:
        self.app_name = app_name
        self.icon = icon  # `[app] icon` (Windows: the notification icon's, without a tray)
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def notify(self, title: str, body: str) -> int:
        """Show one notification; its id on the notification server (Linux; 0 on Windows).
        NotifyError: `invalid` (too long), `limit` (too many at once), `unavailable` (no
        notification server or area)."""
        if len(title) > MAX_TITLE or len(body) > MAX_BODY:
            raise NotifyError("invalid", f"a notification's title has at most {MAX_TITLE} and "
                              f"its body at most {MAX_BODY} characters")
        now = time.monotonic()
        with self._lock:
            while self._sent and now - self._sent[0] > RATE_WINDOW:
                self._sent.popleft()
            if len(self._sent) >= RATE_COUNT:
                raise NotifyError("limit", f"at most {RATE_COUNT} notifications per "
                                  f"{RATE_WINDOW:g} s")
            self._sent.append(now)
        if sys.platform == "win32":
            return _windows_notify(self.app_name, self.icon, title, body)
        if sys.platform == "darwin":
            return _macos_notify(title, body)
        if not sys.platform.startswith("linux"):
            raise NotifyError("unavailable", f"notifications are not supported on {sys.platform}"
                              " yet")
        return _freedesktop_notify(self.app_name, title, body)


#: macOS's AppleScript runner.
OSASCRIPT = "/usr/bin/osascript"


def applescript_string(text: str) -> str:
    """`text` as an AppleScript string literal: quotes and backslashes escaped, line breaks and
    tabs as their escapes, NULs dropped (a command line cannot hold them)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    for char, escape in (("\r", "\\r"), ("\n", "\\n"), ("\t", "\\t"), ("\0", "")):
        escaped = escaped.replace(char, escape)
    return f'"{escaped}"'


def osascript_argv(title: str, body: str, osascript: str) -> list[str]:
    """The command that shows a macOS notification: one script argument, the texts inside it
    only as string literals."""
    return [osascript, "-e", f"display notification {applescript_string(body)} with title "
            f"{applescript_string(title)}"]


def _macos_notify(title: str, body: str) -> int:
    """A notification through AppleScript (macOS shows it as Script Editor's); 0."""
    try:
        proc = subprocess.run(osascript_argv(title, body, OSASCRIPT), capture_output=True,
                              text=True, errors="replace", timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NotifyError("unavailable", f"osascript failed: {e}") from e
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"status {proc.returncode}"])[-1]
        raise NotifyError("unavailable", f"osascript refused the notification: {why}")
    return 0


def _windows_notify(app_name: str, icon: Path | None, title: str, body: str) -> int:
    """A notification from the app's notification-area icon (plain text: Windows reads no
    markup in it); 0."""
    from wvwasi.runtime.window import webview2

    try:
        webview2.notify(app_name, icon, title, body)
    except OSError as e:
        raise NotifyError("unavailable", str(e)) from e
    return 0


def _freedesktop_notify(app_name: str, title: str, body: str) -> int:
    """org.freedesktop.Notifications.Notify on the session bus; the notification's id. The body
    is shown as the plain text it is: escaped where the server reads markup in it (links,
    images)."""
    from jeepney import DBusAddress, DBusErrorResponse, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import unwrap_msg

    address = DBusAddress("/org/freedesktop/Notifications", bus_name=_SERVER, interface=_SERVER)
    try:
        with open_dbus_connection(bus="SESSION") as bus:
            capabilities = unwrap_msg(bus.send_and_get_reply(
                new_method_call(address, "GetCapabilities"), timeout=TIMEOUT))[0]
            if "body-markup" in capabilities:
                body = html.escape(body, quote=False)
            # app_name, replaces_id, app_icon, summary, body, actions, hints, expire_timeout
            call = new_method_call(address, "Notify", "susssasa{sv}i",
                                   (app_name, 0, "", title, body, [], {}, -1))
            reply = unwrap_msg(bus.send_and_get_reply(call, timeout=TIMEOUT))
    except KeyError as e:  # jeepney: DBUS_SESSION_BUS_ADDRESS is not set
        raise NotifyError("unavailable", "no desktop session bus (DBUS_SESSION_BUS_ADDRESS is "
                          "not set): notifications need a desktop session") from e
    except DBusErrorResponse as e:
        raise NotifyError("unavailable", f"no notification server answered ({e.name}): "
                          "the desktop has no notification daemon running") from e
    except (OSError, TimeoutError, ValueError) as e:
        raise NotifyError("unavailable", f"the desktop session bus failed: {e}") from e
    return int(reply[0])

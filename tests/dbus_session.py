"""A private D-Bus session bus (Debian's dbus-daemon) and a notification server that records
what it is sent, for the `wvwasi.notify` tests.

`session_bus(folder)` yields the bus address (what DBUS_SESSION_BUS_ADDRESS holds); its config
has no service folders, so nothing is activated behind the test's back. `NotificationServer`
owns org.freedesktop.Notifications on that bus (jeepney, as the runtime) and answers
`GetCapabilities` (`capabilities`) and `Notify` like a desktop's daemon, keeping each call's
(app_name, summary, body).
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jeepney import HeaderFields, MessageType, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

SERVER = "org.freedesktop.Notifications"
_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@contextmanager
def session_bus(folder: Path) -> Iterator[str]:
    """A dbus-daemon listening in `folder` for the block; its address."""
    socket = folder / "bus"
    config = folder / "session.conf"
    config.write_text(_CONFIG.format(socket=socket))
    daemon = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork",
                               "--print-address=1"], stdout=subprocess.PIPE, text=True)
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()  # printed once it listens
        assert address.startswith("unix:"), f"dbus-daemon did not start: {address!r}"
        yield address
    finally:
        daemon.terminate()
        daemon.wait(10)


class NotificationServer:
    """Serves org.freedesktop.Notifications.Notify on `address` on a thread until `close()`."""

    def __init__(self, address: str, capabilities: tuple[str, ...] = ("body",)) -> None:
        self.capabilities = capabilities
        self.received: list[tuple[str, str, str]] = []  # (app_name, summary, body)
        self._conn = open_dbus_connection(bus=address)
        reply = self._conn.send_and_get_reply(message_bus.RequestName(SERVER), timeout=10)
        assert reply.body == (1,), f"could not own {SERVER}: {reply.body}"  # primary owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-notifications",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._conn.receive(timeout=0.2)
            except TimeoutError:
                continue
            header = message.header
            if header.message_type != MessageType.method_call:
                continue
            member = header.fields.get(HeaderFields.member)
            if member == "GetCapabilities":
                self._conn.send(new_method_return(message, "as", (list(self.capabilities),)))
            elif member == "Notify":
                app_name, _replaces, _icon, summary, body, *_ = message.body
                self.received.append((app_name, summary, body))
                self._conn.send(new_method_return(message, "u", (len(self.received),)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()

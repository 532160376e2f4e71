"""A polkit authentication agent that cancels every request, as a user pressing Cancel in the
desktop's password dialog does (tests/test_update.py: pkexec's status 126).

`python polkit_agent.py PID READY`: registers itself on the system bus for the process PID (a
`unix-process` subject, as `pkttyagent --process` does), creates the file READY, then answers
every BeginAuthentication with polkit's Cancelled error until it is killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gi.repository import Gio, GLib

AGENT_PATH = "/dev/wvwasi/tests/PolkitAgent"
INTERFACE = """<node><interface name="org.freedesktop.PolicyKit1.AuthenticationAgent">
  <method name="BeginAuthentication">
    <arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="s" direction="in"/>
    <arg type="a{ss}" direction="in"/><arg type="s" direction="in"/>
    <arg type="a(sa{sv})" direction="in"/>
  </method>
  <method name="CancelAuthentication"><arg type="s" direction="in"/></method>
</interface></node>"""


def _answer(_conn: Gio.DBusConnection, _sender: str, _path: str, _iface: str, method: str,
            _params: GLib.Variant, invocation: Gio.DBusMethodInvocation) -> None:
    if method == "BeginAuthentication":
        invocation.return_dbus_error("org.freedesktop.PolicyKit1.Error.Cancelled",
                                     "the test's agent cancels")
    else:
        invocation.return_value(None)


def main(pid: int, ready: Path) -> None:
    bus = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
    info = Gio.DBusNodeInfo.new_for_xml(INTERFACE).interfaces[0]
    bus.register_object(AGENT_PATH, info, _answer, None, None)
    stat = Path(f"/proc/{pid}/stat").read_text()
    start_time = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime
    subject = ("unix-process", {"pid": GLib.Variant("u", pid),
                                "start-time": GLib.Variant("t", start_time)})
    bus.call_sync("org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority",
                  "org.freedesktop.PolicyKit1.Authority", "RegisterAuthenticationAgent",
                  GLib.Variant("((sa{sv})ss)", (subject, "C", AGENT_PATH)), None,
                  Gio.DBusCallFlags.NONE, 30_000, None)
    ready.touch()
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))

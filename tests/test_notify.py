"""`wvwasi.notify`'s host side (runtime/notify.py) against a real session bus (dbus-daemon) and
a notification server that records what arrives: title and body arrive; no server, no bus, too
long and too many fail with the page's kinds. The page's call in a real window is in
tests/test_desktop_window.py."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbus_session import NotificationServer, session_bus
from hypothesis import given, settings
from hypothesis import strategies as st

from wvwasi.runtime import notify
from wvwasi.runtime.notify import Notifier, NotifyError


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with session_bus(tmp_path) as address:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield address


def test_title_and_body_reach_the_notification_server(bus: str):
    server = NotificationServer(bus)
    try:
        assert Notifier("Notes").notify("Saved", "Shopping.note — 2 lines ✓") == 1
        assert Notifier("Notes").notify("Second", "") == 2
    finally:
        server.close()
    assert server.received == [("Notes", "Saved", "Shopping.note — 2 lines ✓"),
                               ("Notes", "Second", "")]


def test_the_body_stays_plain_text_where_the_server_reads_markup(bus: str):
    body = 'Read <a href="https://evil.example/">this</a> & <img src="x">'
    server = NotificationServer(bus, capabilities=("body", "body-markup"))
    try:
        Notifier("Notes").notify("<b>Title</b>", body)
    finally:
        server.close()
    assert server.received == [("Notes", "<b>Title</b>", 'Read &lt;a href="https://evil.example/"'
                                '&gt;this&lt;/a&gt; &amp; &lt;img src="x"&gt;')]


def test_without_a_notification_server_the_call_fails_as_unavailable(bus: str):
    with pytest.raises(NotifyError, match="no notification server answered") as e:
        Notifier("Notes").notify("Saved", "")
    assert e.value.kind == "unavailable"


def test_without_a_session_bus_the_call_fails_as_unavailable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    with pytest.raises(NotifyError, match="no desktop session bus") as e:
        Notifier("Notes").notify("Saved", "")
    assert e.value.kind == "unavailable"
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'gone'}")
    with pytest.raises(NotifyError, match="session bus failed") as e:
        Notifier("Notes").notify("Saved", "")
    assert e.value.kind == "unavailable"


def test_long_and_flooding_notifications_are_refused(bus: str):
    server = NotificationServer(bus)
    notifier = Notifier("Notes")
    try:
        with pytest.raises(NotifyError, match="at most 256") as e:
            notifier.notify("x" * (notify.MAX_TITLE + 1), "")
        assert e.value.kind == "invalid"
        with pytest.raises(NotifyError) as e:
            notifier.notify("t", "x" * (notify.MAX_BODY + 1))
        assert e.value.kind == "invalid"
        for i in range(notify.RATE_COUNT):
            notifier.notify(f"n{i}", "")
        with pytest.raises(NotifyError, match="at most 10 notifications per 10 s") as e:
            notifier.notify("one too many", "")
        assert e.value.kind == "limit"
    finally:
        server.close()
    assert [title for _, title, _ in server.received] == [f"n{i}" for i in range(10)]


# macOS: AppleScript's `display notification` through osascript. No Mac here: the command is
# checked as data against AppleScript's string-literal rules, and run against a recording
# osascript stand-in.
HOSTILE = ['" & do shell script "touch /tmp/pwned" & "', 'back\\slash\\', 'a\nb\r\nc\td',
           '\\" & (do shell script "id") & \\"', "-e", "x\0y", "«data utxt0041»", "✓ ünïcode"]
LITERAL = re.compile(r'"((?:[^"\\]|\\[\\"nrt])*)"')


def _read_literal(script: str, at: int) -> tuple[str, int]:
    """The AppleScript string literal at `at` in `script`, decoded, and where it ends."""
    m = LITERAL.match(script, at)
    assert m, f"no string literal at {at} in {script!r}"
    text = re.sub(r"\\(.)", lambda e: {"n": "\n", "r": "\r", "t": "\t"}.get(e[1], e[1]), m[1])
    return text, m.end()


def _parse(script: str) -> tuple[str, str]:
    """(title, body) of `display notification <literal> with title <literal>`, or fail."""
    head = "display notification "
    assert script.startswith(head)
    body, at = _read_literal(script, len(head))
    assert script[at:at + len(" with title ")] == " with title "
    title, end = _read_literal(script, at + len(" with title "))
    assert end == len(script), f"text after the title: {script[end:]!r}"
    return title, body


#: Any text, AppleScript's special characters often.
TEXT = st.text(st.one_of(st.sampled_from('"\\\n\r\t\0&-'), st.characters()))


@settings(max_examples=100, deadline=None)
@given(TEXT, TEXT)
def test_the_osascript_command_holds_any_text_only_as_string_literals(title: str, body: str):
    argv = notify.osascript_argv(title, body, "/usr/bin/osascript")
    assert argv[:2] == ["/usr/bin/osascript", "-e"] and len(argv) == 3
    assert _parse(argv[2]) == (title.replace("\0", ""), body.replace("\0", ""))


def test_hostile_titles_stay_text_in_the_osascript_command():
    for text in HOSTILE:
        argv = notify.osascript_argv(text, text, "/usr/bin/osascript")
        assert _parse(argv[2]) == (text.replace("\0", ""),) * 2
    assert notify.osascript_argv('say "hi" \\ & do', "a\nb", "o") == [
        "o", "-e", 'display notification "a\\nb" with title "say \\"hi\\" \\\\ & do"']


@pytest.fixture
def macos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sys.platform "darwin" and a recording osascript (each call's arguments, each ended by a
    NUL, then RS NUL, in the file returned); a title "fail" makes it fail as osascript does."""
    log = tmp_path / "osascript.log"
    stub = tmp_path / "osascript"
    stub.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" >> '{log}'\nprintf '\\036\\0' >> '{log}'\n"
                    "case \"$2\" in *'title \"fail\"') echo '0:1: execution error: Not "
                    "authorized (-1743)' >&2; exit 1;; esac\n")
    stub.chmod(0o755)
    monkeypatch.setattr(notify, "OSASCRIPT", str(stub))
    monkeypatch.setattr(sys, "platform", "darwin")
    return log


def test_macos_notifications_run_osascript_within_the_same_bounds(macos: Path):
    notifier = Notifier("Notes")
    assert notifier.notify(HOSTILE[0], "body\n2") == 0
    with pytest.raises(NotifyError, match="osascript refused the notification: 0:1: execution "
                       r"error: Not authorized \(-1743\)$") as e:
        notifier.notify("fail", "")
    assert e.value.kind == "unavailable"
    with pytest.raises(NotifyError) as e:
        notifier.notify("x" * (notify.MAX_TITLE + 1), "")
    assert e.value.kind == "invalid"
    for i in range(notify.RATE_COUNT - 2):
        notifier.notify(f"n{i}", "")
    with pytest.raises(NotifyError) as e:
        notifier.notify("one too many", "")
    assert e.value.kind == "limit"
    calls = [c.split("\0")[:-1] for c in macos.read_text().split("\x1e\0")[:-1]]
    assert calls[0] == notify.osascript_argv(HOSTILE[0], "body\n2", "")[1:]
    assert [_parse(c[1])[0] for c in calls] == [HOSTILE[0], "fail",
                                                *(f"n{i}" for i in range(8))]


def test_macos_without_osascript_is_unavailable(macos: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(notify, "OSASCRIPT", str(macos.parent / "missing"))
    with pytest.raises(NotifyError, match="osascript failed") as e:
        Notifier("Notes").notify("Saved", "")
    assert e.value.kind == "unavailable"

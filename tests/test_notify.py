"""`wvwasi.notify`'s host side (runtime/notify.py) against a real session bus (dbus-daemon) and
a notification server that records what arrives: title and body arrive; no server, no bus, too
long and too many fail with the page's kinds. The page's call in a real window is in
tests/test_desktop_window.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dbus_session import NotificationServer, session_bus

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

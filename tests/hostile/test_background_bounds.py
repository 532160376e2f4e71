"""A background service's fan-out under faults: a subscriber that stops reading is disconnected
without stalling the others, messages sent while the service is down overflow loudly, and
messages it never read before crashing are counted to their senders."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostutil import WAIT, EventLog, is_exit, is_message

from wvwasi.runtime.host.background import RESTART_QUEUE, SUBSCRIBER_BUFFER
from wvwasi.runtime.host.events import Event, Exited, Message
from wvwasi.runtime.manifest import load_manifest

SERVICES: dict[str, Any] = {
    "echo": {"source": "echo_lines", "kind": "background"},
    "crasher": {"source": "crash_on", "kind": "background"},
    "missing": {"source": "services/missing.wasm", "kind": "background"},
}


@pytest.fixture
def host(make_project: Callable[..., Path], make_host: Callable[..., Any]) -> Any:
    return make_host(load_manifest(make_project(SERVICES))).start()


def test_a_stuck_subscriber_is_disconnected_and_the_others_keep_going(host: Any) -> None:
    release = threading.Event()
    stuck: list[Event] = []

    def stuck_callback(event: Event) -> None:
        stuck.append(event)
        release.wait(WAIT)  # a busy tab: the first event blocks until released

    fast = EventLog()
    sender = host.subscribe("echo", fast)
    sender.send("up?")
    fast.wait_for(is_message("up?"))  # started: nothing waits in the restart queue
    host.subscribe("echo", stuck_callback)
    payload = "x" * (64 << 10)
    count = 2 * SUBSCRIBER_BUFFER // len(payload)  # twice what the stuck one may fall behind
    for i in range(count):
        sender.send(f"{i} {payload}")
    fast.wait_for(is_message(f"{count - 1} {payload}"))  # every message reached the fast one
    got = [e.data for e in fast.events if isinstance(e, Message)]
    assert got == ["up?"] + [f"{i} {payload}" for i in range(count)]
    release.set()
    done = threading.Event()
    # The stuck subscriber gets its overflow Exited once its callback returns.
    for _ in range(int(WAIT * 10)):
        if stuck and isinstance(stuck[-1], Exited):
            break
        done.wait(0.1)
    last = stuck[-1]
    assert isinstance(last, Exited) and last.error is not None, stuck[-3:]
    assert last.error.kind == "overflow"
    assert f"{SUBSCRIBER_BUFFER >> 20} MiB" in last.error.message
    assert len(stuck) < count  # it was cut off, not fed everything
    sender.send("still here")  # the service and the fast subscriber are unaffected
    fast.wait_for(is_message("still here"))


def test_messages_sent_while_the_service_is_down_overflow_loudly(host: Any) -> None:
    log = EventLog()
    sub = host.subscribe("missing", log)
    log.wait_for(is_exit("start"))  # it cannot start: every message waits for a restart
    for i in range(RESTART_QUEUE):
        sub.send(f"m{i}")
    with pytest.raises(BrokenPipeError, match="restart queue holds"):
        sub.send("one too many")
    index = log.wait_for(is_exit("overflow"))
    assert "disconnected" in log.events[index].error.message  # type: ignore[union-attr]


def test_messages_unread_at_a_crash_are_counted_to_their_senders(host: Any) -> None:
    a_log, b_log = EventLog(), EventLog()
    a = host.subscribe("crasher", a_log)
    b = host.subscribe("crasher", b_log)
    a.send("hello")
    b_log.wait_for(is_message("hello"))
    a.send("crash")  # it waits 300 ms, then traps: what follows stays unread
    line = "y" * 999
    for _ in range(300):  # 600 kB: more than wasmtime reads ahead from the pipe (~192 KiB)
        a.send(line)
        b.send(line)
    lost = []
    for log in (a_log, b_log):
        exited = log.events[log.wait_for(is_exit("trap"))]
        assert isinstance(exited, Exited) and exited.error is not None
        found = re.search(r"; (\d+) message\(s\) this subscriber sent were not read and are lost",
                          exited.error.message)
        assert found, exited.error.message
        lost.append(int(found[1]))
    assert all(100 <= n <= 300 for n in lost), lost
    assert abs(lost[0] - lost[1]) <= 1, lost  # interleaved sends: an even share each
    b.send("after")  # the restarted instance gets new messages
    b_log.wait_for(is_message("after"))

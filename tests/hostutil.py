"""Helpers for tests that drive service instances: collect their events with generous waits."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wvwasi.runtime.host.events import Event, Exited, Message, Stderr

#: How long to wait for one event before calling the service stuck (never a speed assertion).
WAIT = 30.0


def next_event(inst: Any, timeout: float = WAIT) -> Event:
    """The instance's next queued event; fails the test if none comes within `timeout`."""
    event = inst.recv(timeout)
    assert event is not None, f"no event from the service within {timeout:g} s"
    return event


def next_message(inst: Any) -> bytes | str:
    """The next Message's data, skipping Stderr lines; fails on Exited."""
    while True:
        event = next_event(inst)
        if isinstance(event, Message):
            return event.data
        assert not isinstance(event, Exited), f"service exited early: {event}"


@dataclass
class Outcome:
    """Everything an instance reported until it exited."""

    messages: list[bytes | str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    exited: Exited | None = None


def drain(inst: Any) -> Outcome:
    """Collect events until Exited (which must come last)."""
    out = Outcome()
    while out.exited is None:
        event = next_event(inst)
        if isinstance(event, Message):
            out.messages.append(event.data)
        elif isinstance(event, Stderr):
            out.stderr.append(event.text)
        else:
            out.exited = event
    assert inst.recv(0.05) is None, "an event arrived after Exited"
    return out


class EventLog:
    """A thread-safe `on_event` callback that records events and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def _find(self, match: Callable[[Event], bool], start: int) -> int | None:
        return next((i for i in range(start, len(self.events)) if match(self.events[i])), None)

    def wait_for(self, match: Callable[[Event], bool], start: int = 0) -> int:
        """Index of the first event at or after `start` that `match`es; fails after WAIT s."""
        with self._cond:
            found = self._cond.wait_for(lambda: self._find(match, start) is not None, WAIT)
            assert found, f"no matching event within {WAIT:g} s; got {self.events[start:]}"
            index = self._find(match, start)
            assert index is not None
            return index


def is_message(data: bytes | str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, Message) and e.data == data


def is_exit(kind: str | None = None) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, Exited) and (kind is None or (e.error and e.error.kind == kind))

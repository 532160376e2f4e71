"""Stdout read on an asyncio loop (`spawn(..., output_loop=loop)`, what the bridge does): the
messages reach `on_event` (or `on_messages`, a read's at once) on that loop, in order, before
Exited; `on_event` returning False
pauses the guest's stdout until `resume_output()`; terminate() and a stopped loop still end the
instance with all its output handed over."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hostutil import WAIT

from wvwasi.runtime.host import framing
from wvwasi.runtime.host.events import Event, Exited, Message
from wvwasi.runtime.host.service_host import SpawnOptions
from wvwasi.runtime.manifest import load_manifest

SERVICES: dict[str, dict[str, Any]] = {
    "frames": {"source": "echo_frames", "kind": "dedicated", "ipc": "frames"},
    "flood": {"source": "flood", "kind": "dedicated", "ipc": "stream"},
}
MIB = 1 << 20


@pytest.fixture
def host(make_project: Callable[..., Any], make_host: Callable[..., Any]) -> Any:
    return make_host(load_manifest(make_project(SERVICES))).start()


class LoopThread:
    """An asyncio loop running on its own thread, as the bridge's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()
    lt.loop.close()


class Recorder:
    """on_event: records (thread, event); `accept(event)` says what it returns."""

    def __init__(self, accept: Callable[[Event], bool] = lambda e: True) -> None:
        self.accept = accept
        self.events: list[tuple[int, Event]] = []
        self.cond = threading.Condition()

    def __call__(self, event: Event) -> bool:
        with self.cond:
            self.events.append((threading.get_ident(), event))
            self.cond.notify_all()
        return self.accept(event)

    def wait_for(self, check: Callable[[], bool]) -> None:
        with self.cond:
            assert self.cond.wait_for(check, WAIT), f"timed out; got {len(self.events)} events"

    def received(self) -> int:
        with self.cond:
            return sum(len(e.data) for _, e in self.events if isinstance(e, Message))

    def exited(self) -> Exited | None:
        with self.cond:
            return next((e for _, e in self.events if isinstance(e, Exited)), None)


def test_messages_arrive_on_the_loop_in_order_then_exited(
    host: Any, loop_thread: LoopThread
) -> None:
    rec = Recorder()
    inst = host.spawn("frames", on_event=rec, output_loop=loop_thread.loop)
    sent = [f"message {i}".encode() * (i % 7 + 1) for i in range(300)]
    for message in sent:
        inst.send(message)
    inst.close_stdin()
    assert inst.wait(WAIT) is not None
    rec.wait_for(lambda: rec.exited() is not None)
    messages = [(t, e) for t, e in rec.events if isinstance(e, Message)]
    assert [e.data for _, e in messages] == sent
    assert {t for t, _ in messages} == {loop_thread.thread.ident}
    assert isinstance(rec.events[-1][1], Exited) and rec.events[-1][1].code == 0


def test_on_messages_gets_all_the_messages_of_a_read_at_once_on_the_loop(
    host: Any, loop_thread: LoopThread
) -> None:
    rec = Recorder()
    batches: list[tuple[int, list[bytes | str]]] = []

    def on_messages(messages: list[bytes | str]) -> bool:
        batches.append((threading.get_ident(), messages))
        return True

    inst = host.spawn("frames", on_event=rec, output_loop=loop_thread.loop,
                      on_messages=on_messages)
    sent = [f"message {i}".encode() for i in range(2000)]
    inst.write_stdin(b"".join(framing.encode("frames", m) for m in sent))  # one write
    inst.close_stdin()
    assert inst.wait(WAIT) is not None
    rec.wait_for(lambda: rec.exited() is not None)
    assert [m for _, batch in batches for m in batch] == sent
    assert {t for t, _ in batches} == {loop_thread.thread.ident}
    assert max(len(batch) for _, batch in batches) > 1
    assert not any(isinstance(e, Message) for _, e in rec.events)  # only Exited there


def test_on_messages_is_left_out_where_stdout_has_a_reader_thread(
    host: Any, loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    # wasmtime's output callbacks (Windows) run on its threads, where a message waits for room
    # on its own: they get on_event per message, never a batch that could not wait.
    monkeypatch.setenv("WVWASI_STDIO", "callback")
    rec = Recorder()
    batches: list[list[bytes | str]] = []
    inst = host.spawn("frames", on_event=rec, output_loop=loop_thread.loop,
                      on_messages=lambda messages: batches.append(messages) or True)
    sent = [f"message {i}".encode() for i in range(50)]
    for message in sent:
        inst.send(message)
    inst.close_stdin()
    assert inst.wait(WAIT) is not None
    rec.wait_for(lambda: rec.exited() is not None)
    assert [e.data for _, e in rec.events if isinstance(e, Message)] == sent
    assert batches == []


def test_on_event_false_pauses_stdout_until_resume_output(
    host: Any, loop_thread: LoopThread
) -> None:
    paused = threading.Event()

    def accept(event: Event) -> bool:
        if isinstance(event, Message) and not paused.is_set():
            paused.set()
            return False  # the first chunk: stop reading
        return True

    rec = Recorder(accept)
    inst = host.spawn("flood", SpawnOptions(args=("8",)), on_event=rec,
                      output_loop=loop_thread.loop)
    assert paused.wait(WAIT)
    time.sleep(1.0)  # time in which an unpaused 8 MiB flood would arrive whole
    assert rec.received() <= MIB  # one read at most: the guest waits on its full pipe
    assert inst.alive and rec.exited() is None
    inst.resume_output()
    assert inst.wait(WAIT) is not None
    rec.wait_for(lambda: rec.exited() is not None)
    data = b"".join(e.data for _, e in rec.events if isinstance(e, Message))
    assert len(data) == 8 * MIB
    assert data[:251 * 4] == bytes(i % 251 for i in range(251 * 4))
    assert rec.exited() == Exited(0)


def test_terminate_ends_an_instance_whose_stdout_is_paused(
    host: Any, loop_thread: LoopThread
) -> None:
    rec = Recorder(lambda e: False)  # never takes more
    inst = host.spawn("flood", SpawnOptions(args=("64",)), on_event=rec,
                      output_loop=loop_thread.loop)
    rec.wait_for(lambda: rec.received() > 0)
    inst.terminate()
    exited = inst.wait(WAIT)
    assert exited is not None and exited.error is not None
    assert exited.error.kind == "terminated"


def test_output_is_read_to_the_end_when_the_loop_has_stopped(
    host: Any, loop_thread: LoopThread
) -> None:
    rec = Recorder()
    inst = host.spawn("frames", on_event=rec, output_loop=loop_thread.loop)
    inst.send(b"first")
    rec.wait_for(lambda: rec.received() == len(b"first"))
    loop_thread.stop()  # the bridge went away; the instance still finishes
    inst.send(b"second")
    inst.close_stdin()
    exited = inst.wait(WAIT)
    assert exited == Exited(0)
    assert [e.data for _, e in rec.events if isinstance(e, Message)] == [b"first", b"second"]


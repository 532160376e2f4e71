"""One page worker on the bridge: its instance or background subscription and both windows.

Output events arrive on host threads and wait for credit when the page is a window behind; a
dedicated instance's messages are read on the bridge's event loop instead (no thread hand-off per
message), where nothing may wait: what the window cannot take yet is held (at most one stdout
read's worth) and the instance stops reading its stdout until CREDIT makes room, so the guest
waits on its full pipe as before;
input (messages, stdin) goes straight into the instance's stdin pipe from the event loop when that
cannot block (nothing queued before it, non-blocking write), else through the worker's own writer
thread, so a service that does not read its stdin never blocks the bridge's event loop. Both
windows are enforced: a page that sends past its input window, or credits output it was never
sent, breaks the protocol (`PolicyError`, the connection closes with 1008), so a worker never
holds more than WINDOW bytes of the page's input.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

from ..host.background import Subscription
from ..host.events import Event, Exited, Message, ServiceError, Stderr
from ..host.instance import Instance
from ..manifest import Service
from .protocol import HEADER, WINDOW, Op, PolicyError, json_record, record

if TYPE_CHECKING:
    from .session import Session

#: One input record for a worker: (SEND, STDIN or CLOSE_STDIN, its data, its window cost).
Input = tuple[Op, bytes | str, int]


class WorkerLink:
    """One page worker: its instance (or background subscription) and both credit windows."""

    def __init__(self, session: Session, ident: int, service: Service) -> None:
        self.session = session
        self.id = ident
        self.service = service
        self.background = service.kind == "background"
        self._handle: Instance | Subscription | None = None
        self._cond = threading.Condition()
        self._unacked = 0  # output bytes sent to the page and not yet credited back
        self._in_flight = 0  # input bytes received from the page and not yet credited to it
        self._inbox: deque[Input] = deque()
        self._writer: threading.Thread | None = None
        self._writing = False  # the writer thread is delivering a batch
        self._muted = False  # terminated by the page: drop further output
        self._closed = False  # ended: drop everything, wake every waiter
        self._held: deque[tuple[bytes, int]] = deque()  # loop-read output over the window
        self._paused = False  # the instance stopped reading stdout for the window
        self._exit: Exited | None = None  # arrived while output was still held

    def attach(self, handle: Instance | Subscription) -> None:
        """The instance or subscription has started (a TERMINATE may already have come)."""
        with self._cond:
            self._handle = handle
            muted = self._muted
            resume = self._paused and not self._held
            self._paused = self._paused and not resume
            self._cond.notify_all()
        if muted:
            self._stop(handle)
        elif resume and isinstance(handle, Instance):
            handle.resume_output()

    # host threads

    def on_event(self, event: Event) -> bool:
        """Forward one event to the page (host threads), waiting for credit when the page is a
        window behind."""
        if isinstance(event, Exited):
            self._exited(event)
            return True
        if isinstance(event, Message):
            data = event.data
            op, payload = Op.MESSAGE, data.encode() if isinstance(data, str) else data
        elif isinstance(event, Stderr):
            op, payload = Op.STDERR, event.text.encode()
        else:
            return True
        cost = len(payload) + HEADER.size
        with self._cond:
            while (not self._closed and not self._muted and self._unacked
                   and self._unacked + cost > WINDOW):
                self._cond.wait()
            if self._closed or self._muted:
                return True
            self._unacked += cost
        self.session.post(record(op, self.id, payload))
        return True

    def on_messages(self, messages: list[bytes | str]) -> bool:
        """A dedicated instance's messages of one stdout read, on the loop, where nothing may
        wait: what the window takes is posted as one piece, the rest is held; False (pause
        reading) when something was held, until `credit` calls `resume_output`."""
        parts: list[bytes] = []
        with self._cond:
            if self._closed or self._muted:
                return True
            for data in messages:
                payload = data.encode() if isinstance(data, str) else data
                cost = len(payload) + HEADER.size
                if self._held or (self._unacked and self._unacked + cost > WINDOW):
                    self._held.append((record(Op.MESSAGE, self.id, payload), cost))
                    continue
                self._unacked += cost
                parts += (HEADER.pack(len(payload), Op.MESSAGE, self.id), payload)
            self._paused = bool(self._held)
        if parts:
            self.session.post(b"".join(parts))
        return not self._paused

    def _exited(self, event: Exited) -> None:
        with self._cond:
            if self._closed:
                return
            if self._held and not self._muted:  # its last messages first
                self._exit = event
                return
            self._closed = True
            handle = self._handle
            self._cond.notify_all()
        if self.background and isinstance(handle, Subscription):
            handle.close()  # the shared instance restarts; this page's worker has ended
        self.session.finish(self, event.outputs, json_record(
            Op.EXIT, self.id, {"code": event.code, "error": error_json(event)}))

    # the event loop

    def credit(self, amount: int) -> None:
        """The page consumed `amount` bytes of output; more than it was sent is a violation."""
        with self._cond:
            if amount > self._unacked:
                raise PolicyError(
                    f"CREDIT of {amount} bytes for worker {self.id}, which has only "
                    f"{self._unacked} unacknowledged"
                )
            self._unacked -= amount
            ready = []
            while self._held and (not self._unacked
                                  or self._unacked + self._held[0][1] <= WINDOW):
                rec, cost = self._held.popleft()
                self._unacked += cost
                ready.append(rec)
            handle = self._handle
            resume = self._paused and not self._held and handle is not None
            self._paused = self._paused and not resume
            exited, self._exit = (self._exit, None) if not self._held else (None, self._exit)
            self._cond.notify_all()
        if ready:
            self.session.post(b"".join(ready))
        if exited is not None:
            self._exited(exited)
        elif resume and isinstance(handle, Instance):
            handle.resume_output()

    def enqueue(self, items: list[Input]) -> None:
        """Queue input until `flush` (the end of the page's frame): stdin bytes for a dedicated
        instance (messages already framed by its `ipc` mode), a message for a background
        service. Each item's cost counts against the input window (one record may exceed it
        when nothing is in flight, as the page API does)."""
        with self._cond:
            for item in items:
                cost = item[2]
                if cost and self._in_flight and self._in_flight + cost > WINDOW:
                    raise PolicyError(
                        f"worker {self.id}: {self._in_flight + cost} bytes of input in flight, "
                        f"over the window of {WINDOW}: wait for CREDIT"
                    )
                if self._closed:
                    return
                self._in_flight += cost
                self._inbox.append(item)

    def flush(self) -> None:
        """Hand queued input on: straight into the instance's stdin pipe (one non-blocking
        write) when the writer thread is idle and the pipe takes it, else to the writer thread."""
        with self._cond:
            if not self._inbox or self._closed:
                return
            handle = self._handle
            if not self._writing and isinstance(handle, Instance):
                credit = self._write_now(handle)
                if credit:
                    self._in_flight -= credit
                    self.session.credit(self.id, credit)
                if not self._inbox:
                    return
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name=f"wvwasi:bridge:{self.service.name}",
                    daemon=True,
                )
                self._writer.start()
            self._cond.notify_all()

    def _write_now(self, inst: Instance) -> int:
        """Write the inbox's leading input as one chunk, then a CLOSE_STDIN after it, if the
        stdin queue takes it without waiting; the input bytes delivered (held: self._cond)."""
        credit = 0
        while self._inbox:
            parts: list[bytes] = []
            cost = 0
            for op, data, c in self._inbox:
                if op is Op.CLOSE_STDIN:
                    break
                parts.append(data)  # type: ignore[arg-type]
                cost += c
            if parts:
                try:
                    if not inst.try_write_stdin(parts[0] if len(parts) == 1
                                                else b"".join(parts)):
                        break
                except BrokenPipeError:
                    pass  # the instance ended; its EXIT reaches the page
                for _ in parts:
                    self._inbox.popleft()
                credit += cost
            if self._inbox and self._inbox[0][0] is Op.CLOSE_STDIN:
                self._inbox.popleft()
                inst.close_stdin()
        return credit

    def terminate(self) -> None:
        """The page's terminate(): stop the instance (now, or as soon as it has started); its
        EXIT still reaches the page."""
        with self._cond:
            self._muted = True
            self._held.clear()
            handle = self._handle
            exited, self._exit = self._exit, None
            self._cond.notify_all()
        if exited is not None:
            self._exited(exited)
        elif handle is not None:
            self._stop(handle)

    def _stop(self, handle: Instance | Subscription) -> None:
        if isinstance(handle, Subscription):
            self._exited(Exited(None, ServiceError("terminated", "terminated by the page")))
        else:
            handle.terminate("terminated by the page")

    def close(self) -> None:
        """The page is gone: stop everything now, report nothing."""
        with self._cond:
            self._closed = True
            handle = self._handle
            self._inbox.clear()
            self._held.clear()
            self._cond.notify_all()
        if isinstance(handle, Subscription):
            handle.close()
        elif handle is not None:
            handle.terminate("stopped because its page closed")

    # the writer thread

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._inbox or self._handle is None):
                    self._cond.wait()
                if self._closed:
                    return
                batch = list(self._inbox)
                self._inbox.clear()
                handle = self._handle
                self._writing = True
            credit = 0
            for op, data, cost in batch:
                credit += cost
                try:
                    if isinstance(handle, Subscription):
                        handle.send(data)
                    elif op is Op.CLOSE_STDIN:
                        handle.close_stdin()
                    else:
                        handle.write_stdin(data)  # type: ignore[arg-type]
                except BrokenPipeError:
                    pass  # the instance ended or is restarting; its EXIT reaches the page
            with self._cond:
                self._in_flight -= credit
                self._writing = False
            if credit:
                self.session.credit(self.id, credit)


def error_json(event: Exited) -> dict[str, str] | None:
    """How an EXIT or RESULT record reports why an instance ended."""
    return None if event.error is None else {
        "kind": event.error.kind, "message": event.error.message,
    }

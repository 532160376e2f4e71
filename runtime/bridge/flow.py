"""Flow control towards the page: one outbox per connection, packed into frames by one pump.

Records for the page come from any thread (host threads forwarding output, the writer threads of
`link.WorkerLink` returning input credit). `Outbox.post` queues a record; `Outbox.credit` owes
the page input credit, sent with the next frame (small amounts wait up to CREDIT_DELAY so that a
request and its answer share a frame). `Outbox.pump` writes frames of about FRAME_TARGET bytes.

The outbox is bounded: past OUTBOX_BYTES queued, `room()` waits, and the session takes no more
work from the page (it stops reading its socket; finished runs keep their results and their
instance slots). A page that stays over the bound for STALL_TIMEOUT without taking a frame is
reported through `on_stall` (the session closes it 1008).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from aiohttp import web

from .protocol import FRAME_TARGET, U32, WINDOW, Op, record

#: How long small input credits may wait for the service's answer to travel with.
CREDIT_DELAY = 0.002
#: Bytes of records queued for one page (not yet written to its socket) past which the bridge
#: takes no more work from that page.
OUTBOX_BYTES = 16 << 20
#: Seconds a page may stay over OUTBOX_BYTES without the bridge writing it a frame.
STALL_TIMEOUT = 30.0


class Outbox:
    """Records and input credit on their way to one page (thread-safe)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_stall: Callable[[], None]) -> None:
        self._loop = loop
        self._on_stall = on_stall
        self._out: deque[bytes] = deque()
        self._size = 0  # bytes in _out
        self._waiters: list[asyncio.Future[None]] = []  # room() calls, woken on the loop
        self._watch: asyncio.TimerHandle | None = None  # the stall check, while over the bound
        self._watching = False  # a stall check is armed or about to be
        self._wrote = loop.time()  # when the pump last handed a frame to the socket
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._wake_pending = False
        self._credits: dict[int, int] = {}  # input credit not yet sent, by worker id
        self._credit_timer = False  # a timer is armed (or about to be) for owed credit
        self._credit_handle: asyncio.TimerHandle | None = None
        self._loop_thread = threading.get_ident()  # made on the loop (by its Session)
        self.closed = False

    def post(self, rec: bytes) -> None:
        """Queue a record for the page; records are packed into frames."""
        with self._lock:
            if self.closed:
                return
            self._out.append(rec)
            self._size += len(rec)
            if self._size > OUTBOX_BYTES and not self._watching:
                self._watching = True
                self.call_soon(self._arm_watch)
            self._wake_locked()

    @property
    def full(self) -> bool:
        """Over OUTBOX_BYTES: take no more work from the page."""
        return self._size > OUTBOX_BYTES and not self.closed

    async def room(self) -> None:
        """Wait (on the loop) until the outbox is within OUTBOX_BYTES or closed."""
        while self.full:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter

    def _arm_watch(self, delay: float | None = None) -> None:
        self._watch = self._loop.call_later(STALL_TIMEOUT if delay is None else delay,
                                            self._check_stall)

    def _check_stall(self) -> None:
        self._watch = None
        if not self.full:
            self._watching = False
            return
        idle = self._loop.time() - self._wrote
        if idle < STALL_TIMEOUT:
            self._arm_watch(STALL_TIMEOUT - idle)
            return
        self._watching = False
        self._on_stall()

    def _wake_room(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def credit(self, ident: int, amount: int) -> None:
        """Return input credit to the page. Small amounts wait up to CREDIT_DELAY to travel in
        the same frame as the service's answer."""
        with self._lock:
            if self.closed:
                return
            owed = self._credits[ident] = self._credits.get(ident, 0) + amount
            if owed >= WINDOW // 2:
                self._wake_locked()
            elif not self._credit_timer:
                self._credit_timer = True
                if threading.get_ident() == self._loop_thread:
                    self._arm_locked()
                else:
                    self.call_soon(self._arm_credit_timer)

    def close(self) -> None:
        """Drop everything queued; later records are dropped too."""
        with self._lock:
            self.closed = True
            self._out.clear()
            self._size = 0
            self._credits.clear()
        if self._watch is not None:
            self._watch.cancel()
        self._wake_room()

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the bridge's loop, unless the loop has stopped."""
        if threading.get_ident() == self._loop_thread:
            self._loop.call_soon(callback)  # no wake-up through the loop's self-pipe
            return
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the bridge's loop has stopped
            self.closed = True

    def _arm_credit_timer(self) -> None:
        with self._lock:
            self._arm_locked()

    def _arm_locked(self) -> None:
        if self._credit_timer and self._credit_handle is None:
            self._credit_handle = self._loop.call_later(CREDIT_DELAY, self._credit_due)

    def _credit_due(self) -> None:
        with self._lock:
            self._credit_timer = False
            self._credit_handle = None
            if self._credits:
                self._wake_locked()

    def _wake_locked(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            if threading.get_ident() == self._loop_thread:
                self._wake.set()  # on the loop (output read there): the pump runs next
            else:
                self.call_soon(self._wake.set)

    def _take_frame(self) -> bytes | None:
        with self._lock:
            parts = [record(Op.CREDIT, i, U32.pack(n)) for i, n in self._credits.items()]
            if parts:  # the credit travels now: its timer has nothing left to do
                self._credits.clear()
                self._credit_timer = False
                if self._credit_handle is not None:
                    self._credit_handle.cancel()  # no wake-up of the loop for it
                    self._credit_handle = None
            if not self._out and not parts:
                self._wake_pending = False
                return None
            size = sum(map(len, parts))
            while self._out and (not parts or size + len(self._out[0]) <= FRAME_TARGET):
                rec = self._out.popleft()
                parts.append(rec)
                size += len(rec)
                self._size -= len(rec)
            drained = self._size <= OUTBOX_BYTES
        if drained and self._waiters:
            self._wake_room()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def pump(self, ws: web.WebSocketResponse) -> None:
        """Write queued records to `ws` until the connection goes away (run as a task)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (frame := self._take_frame()) is not None:
                try:
                    await ws.send_bytes(frame)
                except ConnectionError:
                    return  # the page is gone; the session cleans up
                self._wrote = self._loop.time()

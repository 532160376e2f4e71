"""Background services: the one shared instance, supervised and restarted with back-off, and
its subscribers, each fed every event from its own bounded queue on its own thread."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..manifest import Service
from . import framing
from .events import Event, Exited, ServiceError, ServiceLimitError
from .instance import Instance, event_cost
from .modules import WasmLoadError

if TYPE_CHECKING:
    from .service_host import ServiceHost

log = logging.getLogger("wvwasi.host")

_RESTART_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
_HEALTHY_SECONDS = 10.0
#: Bytes of events one background subscriber may have waiting before it is disconnected.
SUBSCRIBER_BUFFER = 8 << 20
#: Subscribers of one background service at once.
MAX_SUBSCRIBERS = 256
#: Messages, and their bytes, sent while a background service is not running that wait for it.
RESTART_QUEUE = 1_000
RESTART_QUEUE_BYTES = 16 << 20
#: Messages per background instance whose sender is remembered for "lost" counts.
_SENT_TRACKED = 65_536


class Subscription:
    """One client of a background service: receives every message; `send` goes to its stdin.

    Events reach `on_event` on the subscription's own thread, from a queue of at most
    SUBSCRIBER_BUFFER bytes: a subscriber that falls further behind is disconnected (its last
    event is `Exited` with an "overflow" error) instead of slowing the others down."""

    def __init__(self, bg: Background, on_event: Callable[[Event], None]) -> None:
        self._bg = bg
        self.on_event = on_event
        self._lock = threading.Lock()
        self._queue: deque[Event] = deque()
        self._queued = 0
        self._thread: threading.Thread | None = None
        self._ended = False

    def send(self, message: bytes | str) -> None:
        """Deliver a message to the shared instance (queued while it restarts)."""
        self._bg.send(self, message)

    def close(self) -> None:
        """Stop receiving; the background service keeps running."""
        self._bg.unsubscribe(self)
        self.end(None)

    def deliver(self, event: Event) -> bool:
        """Queue `event` for `on_event`; False if that would go past SUBSCRIBER_BUFFER."""
        cost = event_cost(event)
        with self._lock:
            if self._ended:
                return True
            if self._queued and self._queued + cost > SUBSCRIBER_BUFFER:
                return False
            self._queue.append(event)
            self._queued += cost
            self._wake()
        return True

    def end(self, last: Exited | None) -> None:
        """Drop what is queued; `last` (if any) is the final event `on_event` gets."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self._queue.clear()
            self._queued = 0
            if last is not None:
                self._queue.append(last)
                self._wake()

    def join(self, timeout: float) -> None:
        """Wait for the delivery thread (if any) to finish."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _wake(self) -> None:
        if self._thread is None:  # one thread while events wait; it exits when none do
            self._thread = threading.Thread(
                target=self._deliver_loop, name=f"wvwasi:{self._bg.service.name}:subscriber",
                daemon=True,
            )
            self._thread.start()

    def _deliver_loop(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None
                    return
                event = self._queue.popleft()
                self._queued -= event_cost(event)
            try:
                self.on_event(event)
            except Exception:
                log.exception("subscriber of '%s' failed", self._bg.service.name)


class Background:
    """Supervises the one shared instance of a background service and fans its events out."""

    def __init__(self, host: ServiceHost, service: Service) -> None:
        self.host = host
        self.service = service
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()  # _subs
        self._send_lock = threading.Lock()  # the fields below; held while writing to stdin
        self._instance: Instance | None = None
        self._pending: deque[tuple[Subscription, bytes]] = deque()  # sent while (re)starting
        self._pending_bytes = 0
        self._sent: deque[tuple[Subscription, int]] = deque(maxlen=_SENT_TRACKED)  # (who, end)
        self._offset = 0  # stdin bytes accepted by the current instance
        self._failures = 0
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._supervise, name=f"wvwasi:{service.name}:supervisor", daemon=True
        )
        self._thread.start()

    def subscribe(self, on_event: Callable[[Event], None]) -> Subscription:
        sub = Subscription(self, on_event)
        with self._lock:
            if len(self._subs) >= MAX_SUBSCRIBERS:
                raise ServiceLimitError(
                    f"background service '{self.service.name}' already has {MAX_SUBSCRIBERS} "
                    "subscribers"
                )
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def send(self, sub: Subscription, message: bytes | str) -> None:
        data = framing.encode(self.service.ipc, message)  # a wrong type fails now
        with self._send_lock:
            if self._instance is not None and self._write(sub, data):
                return
            full = len(self._pending) >= RESTART_QUEUE
            if full or self._pending_bytes + len(data) > RESTART_QUEUE_BYTES:
                why = (
                    f"background service '{self.service.name}' is not running (starting or "
                    "restarting) and "
                    f"{len(self._pending)} messages ({self._pending_bytes} bytes) already wait "
                    f"for it (the restart queue holds {RESTART_QUEUE} messages, "
                    f"{RESTART_QUEUE_BYTES >> 20} MiB); this subscriber was disconnected"
                )
            else:
                self._pending.append((sub, data))
                self._pending_bytes += len(data)
                return
        self._disconnect(sub, why)
        raise BrokenPipeError(why)

    def _write(self, sub: Subscription, data: bytes) -> bool:
        """Give `data` to the running instance (with _send_lock held); False if it has ended."""
        assert self._instance is not None
        try:
            self._instance.write_stdin(data)
        except BrokenPipeError:
            return False
        self._offset += len(data)
        self._sent.append((sub, self._offset))
        return True

    def _started(self, inst: Instance) -> None:
        with self._send_lock:
            self._instance = inst
            while self._pending and self._write(*self._pending[0]):
                self._pending_bytes -= len(self._pending.popleft()[1])

    def _ended(self, inst: Instance, exited: Exited) -> None:
        """Report the exit to every subscriber, with the count of its messages it never read."""
        with self._send_lock:
            if self._instance is not inst:
                return
            consumed = self._offset - inst.stdin_unread
            lost = Counter(sub for sub, end in self._sent if end > consumed)
            self._instance, self._offset = None, 0
            self._sent.clear()
        error = exited.error
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            event = exited
            if error is not None and lost[sub]:
                event = Exited(exited.code, ServiceError(error.kind, (
                    f"{error.message}; {lost[sub]} message(s) this subscriber sent were not "
                    "read and are lost"
                )))
            self._deliver(sub, event)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Exited):
            return  # _ended reports it, once the lost messages are counted
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            self._deliver(sub, event)

    def _deliver(self, sub: Subscription, event: Event) -> None:
        if not sub.deliver(event):
            self._disconnect(sub, (
                f"a subscriber of background service '{self.service.name}' fell more than "
                f"{SUBSCRIBER_BUFFER >> 20} MiB of events behind and was disconnected"
            ))

    def _disconnect(self, sub: Subscription, why: str) -> None:
        self.unsubscribe(sub)
        log.warning("%s", why)
        sub.end(Exited(None, ServiceError("overflow", why)))

    def restart_now(self) -> None:
        self._failures = 0
        inst = self._instance
        if inst is not None:
            inst.terminate("restarted after its source changed")
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        inst = self._instance
        if inst is not None:
            inst.terminate("stopped because the app is closing")

    def join(self, timeout: float) -> None:
        """After stop(): wait for the supervisor and the subscribers' delivery threads."""
        deadline = time.monotonic() + timeout
        self._thread.join(timeout)
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.end(None)
            sub.join(max(0.0, deadline - time.monotonic()))

    def _supervise(self) -> None:
        name = self.service.name
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                inst = self.host.spawn(name, on_event=self._dispatch)
                self._started(inst)
                exited = inst.wait()
                assert exited is not None
                self._ended(inst, exited)
            except (OSError, WasmLoadError, ServiceLimitError) as e:
                exited = Exited(None, ServiceError("start", f"service '{name}': {e}"))
                with self._lock:
                    subs = list(self._subs)
                for sub in subs:
                    self._deliver(sub, exited)
            if self._stopped.is_set():
                return
            if time.monotonic() - started > _HEALTHY_SECONDS:
                self._failures = 0
            delay = _RESTART_BACKOFF[min(self._failures, len(_RESTART_BACKOFF) - 1)]
            self._failures += 1
            why = exited.error.message if exited.error else f"exit code {exited.code}"
            log.warning("background '%s' ended (%s); restarting in %.2g s", name, why, delay)
            self._wake.clear()
            self._wake.wait(delay)

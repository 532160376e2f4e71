"""Admission for one page: its instance slots and its queue of RUNs waiting for one.

A page holds at most `[limits] instances_per_page` live workers and running tasks together. A
SPAWN past it is refused; a RUN past it waits in the queue (at most RUN_QUEUE runs and
QUEUE_BYTES of their files and stdin, else refused) and starts, in order, when a slot frees. A
run keeps its slot until its RESULT has been queued for the page, so a page that does not read
its socket holds at most `instances_per_page` finished results on the host side.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from ..host.instance import Instance
from ..host.spawn_options import SpawnOptions
from ..manifest import Service
from .specs import Refused

#: RUNs of one page waiting for one of its instance slots, and the bytes they carry.
RUN_QUEUE = 256
QUEUE_BYTES = 64 << 20


class Run:
    """A RUN of the page: cancelled before it starts, or terminated once it runs."""

    def __init__(
        self, ident: int, service: Service, options: SpawnOptions, stdin: bytes
    ) -> None:
        self.id = ident
        self.service = service
        self.options = options
        self.stdin = stdin
        self.size = len(stdin) + sum(map(len, options.files.values()))
        self._lock = threading.Lock()
        self.cancelled: str | None = None
        self._instance: Instance | None = None

    def started(self, inst: Instance) -> None:
        with self._lock:
            self._instance = inst
            reason = self.cancelled
        if reason is not None:
            inst.terminate(reason)

    def cancel(self, reason: str = "terminated by the page") -> None:
        with self._lock:
            self.cancelled = self.cancelled or reason
            inst = self._instance
        if inst is not None:
            inst.terminate(reason)


class Admission:
    """The instance slots of one page and its run queue (used on the bridge's loop only)."""

    def __init__(
        self, limit: int, workers: Callable[[], int], launch: Callable[[Run], None]
    ) -> None:
        self.limit = limit
        self._workers = workers  # the page's live workers
        self._launch = launch  # starts a run that got a slot
        self._runs: dict[int, Run] = {}  # queued or running
        self._queue: deque[Run] = deque()
        self._queued_bytes = 0
        self._running = 0  # runs holding a slot
        self._stopped = False

    def full(self) -> bool:
        return self._workers() + self._running >= self.limit

    def refusal(self, what: str = "") -> Refused:
        return Refused("limit", (
            f"this page already has {self.limit} workers and tasks running"
            f"{what}: [limits] instances_per_page"
        ))

    def submit(self, run: Run) -> None:
        """Start `run` now or queue it; Refused when the queue is full too."""
        if not self.full() and not self._queue:
            self._runs[run.id] = run
            self._start(run)
        elif len(self._queue) < RUN_QUEUE and self._queued_bytes + run.size <= QUEUE_BYTES:
            self._runs[run.id] = run
            self._queue.append(run)
            self._queued_bytes += run.size
        else:
            raise self.refusal(f" and {len(self._queue)} waiting")

    def _start(self, run: Run) -> None:
        self._running += 1
        self._launch(run)

    def finished(self, run: Run) -> None:
        """`run` has given its slot back (its result is queued, or it failed to start)."""
        self._runs.pop(run.id, None)
        self._running -= 1
        self.dequeue()

    def dequeue(self) -> None:
        """Start queued runs while the page has free slots."""
        while self._queue and not self.full() and not self._stopped:
            run = self._queue.popleft()
            self._queued_bytes -= run.size
            self._start(run)

    def terminate(self, ident: int) -> bool:
        """The page's TERMINATE of a run: True if it was still queued (dropped: the caller
        reports it), False if running (terminated) or unknown."""
        run = self._runs.get(ident)
        if run is not None and run in self._queue:
            self._queue.remove(run)
            self._queued_bytes -= run.size
            del self._runs[ident]
            return True
        if run is not None:
            run.cancel()
        return False

    def stop(self, reason: str) -> None:
        """The page is gone: drop queued runs, stop running ones."""
        self._stopped = True
        self._queue.clear()
        self._queued_bytes = 0
        for run in list(self._runs.values()):
            run.cancel(reason)

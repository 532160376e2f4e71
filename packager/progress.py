"""`wvwasi build`'s progress display on the terminal (rich), and in logs.

On a terminal a spinner names the running step. Elsewhere (a CI log, a pipe) nothing can be
redrawn, so each step is printed when it starts (`… format deb`), running steps are named again
every HEARTBEAT seconds (`… format deb still running (30s)`), and each end is printed as on a
terminal (`✓ format deb 23.93s`).
"""

from __future__ import annotations

import threading
import time

from rich.console import Console

from wvwasi.packager.build import Progress

#: Seconds between two "still running" lines when the output is not a terminal.
HEARTBEAT = 15.0


class RichProgress(Progress):
    """Shows each step as it runs and its time when it ends; formats built at the same time end
    in any order."""

    def __init__(self, console: Console, heartbeat: float = HEARTBEAT) -> None:
        self.console = console
        self.status = console.status("") if console.is_terminal else None
        self.lock = threading.Lock()
        self.running: dict[str, float] = {}  # step -> when it started (not a terminal)
        self.heartbeat = heartbeat
        self.stopped = threading.Event()
        self.beat: threading.Thread | None = None

    def step(self, name: str) -> None:
        with self.lock:
            if self.status is not None:
                self.status.update(f"{name}...")
                self.status.start()
                return
            self.running[name] = time.monotonic()
            self.console.print(f"… {name}", highlight=False)
            if self.beat is None:
                self.beat = threading.Thread(target=self._beat, name="wvwasi:heartbeat",
                                             daemon=True)
                self.beat.start()

    def done(self, name: str, seconds: float) -> None:
        with self.lock:
            self.running.pop(name, None)
            self.console.print(f"[green]✓[/green] {name} [dim]{seconds:.2f}s[/dim]",
                               highlight=False)

    def log(self, message: str) -> None:
        with self.lock:
            self.console.print(f"  [dim]{message}[/dim]", highlight=False)

    def close(self, ok: bool) -> None:
        if self.status is not None:
            self.status.stop()
        self.stopped.set()
        if self.beat is not None:
            self.beat.join()

    def _beat(self) -> None:
        """Every `heartbeat` seconds, one line per step still running (in start order)."""
        while not self.stopped.wait(self.heartbeat):
            now = time.monotonic()
            with self.lock:
                for name, started in self.running.items():
                    self.console.print(f"… {name} still running ({now - started:.0f}s)",
                                       highlight=False)

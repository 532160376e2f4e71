"""`wvwasi build`'s progress display on the terminal (rich)."""

from __future__ import annotations

import time

from rich.console import Console

from wvwasi.packager.build import Progress


class RichProgress(Progress):
    """Shows each step as it runs (a spinner on a terminal, plain lines otherwise)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = console.status("") if console.is_terminal else None
        self.current: str | None = None
        self.started = time.perf_counter()

    def step(self, name: str) -> None:
        self._finish()
        self.current, self.started = name, time.perf_counter()
        if self.status is not None:
            self.status.update(f"{name}...")
            self.status.start()

    def log(self, message: str) -> None:
        self.console.print(f"  [dim]{message}[/dim]", highlight=False)

    def _finish(self) -> None:
        if self.current is not None:
            seconds = time.perf_counter() - self.started
            self.console.print(f"[green]✓[/green] {self.current} [dim]{seconds:.2f}s[/dim]",
                               highlight=False)

    def close(self, ok: bool) -> None:
        if ok:
            self._finish()
        if self.status is not None:
            self.status.stop()

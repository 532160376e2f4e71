"""`wvwasi build`'s progress display on the terminal (rich)."""

from __future__ import annotations

import threading

from rich.console import Console

from wvwasi.packager.build import Progress


class RichProgress(Progress):
    """Shows each step as it runs (a spinner on a terminal, plain lines otherwise) and its time
    when it ends; formats built at the same time end in any order."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = console.status("") if console.is_terminal else None
        self.lock = threading.Lock()

    def step(self, name: str) -> None:
        if self.status is not None:
            with self.lock:
                self.status.update(f"{name}...")
                self.status.start()

    def done(self, name: str, seconds: float) -> None:
        with self.lock:
            self.console.print(f"[green]✓[/green] {name} [dim]{seconds:.2f}s[/dim]",
                               highlight=False)

    def log(self, message: str) -> None:
        with self.lock:
            self.console.print(f"  [dim]{message}[/dim]", highlight=False)

    def close(self, ok: bool) -> None:
        if self.status is not None:
            self.status.stop()

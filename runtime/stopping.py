"""What stops a server that runs without a window (`--serve`, `wvwasi serve`): SIGINT/SIGTERM,
and for the app's `--serve` also the end of stdin when stdin is a pipe."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

#: Signals that stop a server (Ctrl+C, `kill`).
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The exit status of a command stopped by Ctrl+C before it was up (as a shell's 128 + SIGINT;
#: the `wvwasi` command line's for KeyboardInterrupt too).
INTERRUPTED = 130
#: Seconds between checks of the stop flag (signal handlers run between them on every OS).
_POLL = 0.5


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An Event that SIGINT/SIGTERM set while the block runs (call on the main thread); the
    previous handlers come back after it."""
    stop = threading.Event()
    old = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def wait(stop: threading.Event) -> None:
    """Return once `stop` is set (waking now and then, so signal handlers get to run)."""
    while not stop.wait(_POLL):
        pass


def stop_at_end_of_stdin(stop: threading.Event, stream: TextIO | None = None) -> None:
    """When `stream` (default stdin) is a pipe, set `stop` once it ends: the parent that
    started the server closed it or exited (how a test or a remote shell stops it on Windows)."""
    stream = sys.stdin if stream is None else stream
    if _is_pipe(stream):
        threading.Thread(target=_set_at_eof, args=(stream, stop), daemon=True,
                         name="serve-stdin").start()


def _is_pipe(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _set_at_eof(stream: TextIO, stop: threading.Event) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.buffer.read1(65536):
            pass
    stop.set()

"""A service instance's stdin, stdout and stderr, per OS.

wasmtime-py has no custom stdin, so stdin is always a pipe that wasmtime opens as a file: a FIFO
on POSIX, a named pipe on Windows. Output comes back one of two ways:

- `fifo` (POSIX default): stdout/stderr are FIFOs too, drained by reader threads in 1 MiB reads;
  a full pipe blocks the guest (back-pressure) and no Python runs on wasmtime's threads. Given an
  asyncio loop (the bridge's), stdout is read on that loop instead (`add_reader`: no thread
  hand-off per message); its handler returns False to pause reading until `resume_stdout()`.
- `callback` (Windows, where a named pipe cannot be opened with wasmtime's create-and-truncate):
  wasmtime calls us with each chunk on one of its own threads; a slow consumer blocks the guest.
  `WVWASI_STDIO=callback` selects it on POSIX too, which is how the tests cover it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

if TYPE_CHECKING:
    import asyncio

Chunk = Callable[[bytes], None]
#: A stdout handler read on a loop: returns False to stop reading until `resume_stdout()`.
LoopChunk = Callable[[bytes], bool]

_READ_SIZE = 1 << 20
_PIPE_SIZE = 1 << 20
_RELEASE_TIMEOUT = 2.0
_FINISH_POLL = 0.05  # how often finish() checks that the loop reading stdout still runs
# wasmtime-py allocates output callbacks in a shared slab without a lock.
_CALLBACK_LOCK = threading.Lock()


def output_mode() -> str:
    """`fifo` or `callback` (see the module docstring)."""
    if sys.platform == "win32":
        return "callback"
    return "callback" if os.environ.get("WVWASI_STDIO") == "callback" else "fifo"


def grow_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer: fewer wake-ups per megabyte. The default also works."""
    if sys.platform == "linux":
        import fcntl

        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)


class Stdio:
    """Wires one WasiConfig's stdio; `finish()` after the Store is closed flushes the outputs."""

    def __init__(
        self, folder: Path, on_stdout: Chunk | LoopChunk, on_stderr: Chunk,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._folder = folder
        self._handlers = {"stdout": on_stdout, "stderr": on_stderr}
        self._readers: list[threading.Thread] = []
        self._released: list[threading.Event] = []
        self._loop = loop
        self._loop_reader: _LoopReader | None = None

    def resume_stdout(self) -> None:
        """Read stdout again after its loop handler returned False (thread-safe)."""
        if self._loop_reader is not None:
            self._loop_reader.resume()

    def configure(self, wasi: wasmtime.WasiConfig) -> int:
        """Set up `wasi`'s stdio; returns the fd our side writes the guest's stdin to."""
        stdin_fd = _open_stdin(wasi, self._folder)
        try:
            if output_mode() == "fifo":
                for stream in ("stdout", "stderr"):
                    self._fifo_output(wasi, stream)
            else:
                with _CALLBACK_LOCK:
                    wasi.stdout_custom = self._released_callback("stdout")
                    wasi.stderr_custom = self._released_callback("stderr")
        except BaseException:
            os.close(stdin_fd)
            raise
        return stdin_fd

    def finish(self) -> None:
        """Wait until every output byte has been handed over (the guest's ends are closed)."""
        if self._loop_reader is not None:
            self._loop_reader.finish()
        for t in self._readers:
            t.join()
        for released in self._released:
            # wasmtime drops output callbacks on one of its own threads; one still held when
            # the interpreter exits makes that thread panic.
            released.wait(_RELEASE_TIMEOUT)

    def _released_callback(self, stream: str) -> Chunk:
        """The stream's handler, wrapped so that we can tell when wasmtime has let go of it."""
        callback = _Callback(self._handlers[stream])
        released = threading.Event()
        weakref.finalize(callback, released.set)
        self._released.append(released)
        return callback

    def _fifo_output(self, wasi: wasmtime.WasiConfig, stream: str) -> None:
        path = self._folder / stream
        os.mkfifo(path, 0o600)
        # Opening our read end first (non-blocking) lets wasmtime's open for writing succeed.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
        grow_pipe(fd)
        try:
            if stream == "stdout":
                wasi.stdout_file = str(path)
            else:
                wasi.stderr_file = str(path)
        except BaseException:
            os.close(fd)
            raise
        handler = self._handlers[stream]
        if stream == "stdout" and self._loop is not None:
            self._loop_reader = _LoopReader(fd, handler, self._loop)  # type: ignore[arg-type]
            return
        t = threading.Thread(target=_drain, args=(fd, handler), name=f"wvwasi:{stream}")
        t.daemon = True
        t.start()
        self._readers.append(t)


class _Callback:
    """A chunk handler object (plain functions can't be watched with weakref.finalize)."""

    def __init__(self, handler: Chunk) -> None:
        self._handler = handler

    def __call__(self, chunk: bytes) -> None:
        self._handler(chunk)


class _LoopReader:
    """Reads a pipe on an asyncio loop (`add_reader`) and hands each chunk to `handler` there.

    The handler returning False pauses reading (the pipe fills, the guest waits) until
    `resume()`. `finish()` (the instance's thread, once the guest's end is closed) waits for the
    end of the pipe; if the loop has stopped meanwhile, it reads the rest itself."""

    def __init__(self, fd: int, handler: LoopChunk, loop: asyncio.AbstractEventLoop) -> None:
        self._fd: int | None = fd
        self._handler = handler
        self._loop = loop
        self._lock = threading.Lock()  # the fd's owner: the loop's callback or finish()
        self._paused = False
        self._done = threading.Event()
        os.set_blocking(fd, False)
        self._call(self._arm)

    def resume(self) -> None:
        """Read again (thread-safe; a no-op unless paused)."""
        self._call(self._unpause)

    def finish(self) -> None:
        while not self._done.wait(_FINISH_POLL):
            if not self._loop.is_running():  # the bridge has stopped: read the rest here
                with self._lock:
                    self._read_all()
                return

    def _call(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: finish() reads the rest
            self._loop.call_soon_threadsafe(callback)

    def _arm(self) -> None:
        with self._lock:
            if self._fd is not None and not self._paused:
                self._loop.add_reader(self._fd, self._readable)

    def _unpause(self) -> None:
        if self._paused:
            self._paused = False
            self._arm()

    def _readable(self) -> None:
        with self._lock:
            fd = self._fd
            if fd is None:
                return
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._close()
                return
            if self._handler(chunk) is False:
                self._paused = True
                self._loop.remove_reader(fd)

    def _read_all(self) -> None:
        """Read to the end of the pipe on this thread (the loop is gone: nobody waits for
        credit, so what is read is handed over, in order, and may be dropped downstream)."""
        fd = self._fd
        if fd is None:
            return
        os.set_blocking(fd, True)
        with contextlib.suppress(OSError):
            while chunk := os.read(fd, _READ_SIZE):
                self._handler(chunk)
        self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(RuntimeError, ValueError):  # loop closed / not registered
                self._loop.remove_reader(fd)
            os.close(fd)
        self._done.set()


def _drain(fd: int, handler: Chunk) -> None:
    try:
        while chunk := os.read(fd, _READ_SIZE):
            handler(chunk)
    finally:
        os.close(fd)


def _open_stdin(wasi: wasmtime.WasiConfig, folder: Path) -> int:
    if sys.platform == "win32":
        return _windows_stdin(wasi, folder)
    path = folder / "stdin"
    os.mkfifo(path, 0o600)
    # A FIFO opens for reading only once a writer exists, and vice versa: hold a dummy reader
    # while opening our writer, so wasmtime's open of the read end never blocks.
    dummy = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        writer = os.open(path, os.O_WRONLY)
        try:
            wasi.stdin_file = str(path)
        except BaseException:
            os.close(writer)
            raise
        return writer
    finally:
        os.close(dummy)


def _windows_stdin(wasi: wasmtime.WasiConfig, folder: Path) -> int:  # pragma: no cover - Windows
    """A named pipe whose client end wasmtime opens as the guest's stdin."""
    import ctypes
    import msvcrt
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.CreateNamedPipeW.restype = wintypes.HANDLE
    kernel32.CreateNamedPipeW.argtypes = [
        wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.DWORD,
        wintypes.DWORD, wintypes.DWORD, wintypes.DWORD, ctypes.c_void_p,
    ]
    pipe_access_outbound, pipe_reject_remote, invalid = 0x2, 0x8, wintypes.HANDLE(-1).value
    name = rf"\\.\pipe\wvwasi-{os.getpid()}-{folder.name}"
    handle = kernel32.CreateNamedPipeW(
        name, pipe_access_outbound, pipe_reject_remote, 1, _PIPE_SIZE, 0, 0, None
    )
    if handle == invalid:
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        wasi.stdin_file = name  # wasmtime connects as the pipe's only client
    except BaseException:
        kernel32.CloseHandle(handle)
        raise
    return msvcrt.open_osfhandle(handle, os.O_WRONLY)

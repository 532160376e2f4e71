"""One running service instance: a wasmtime Store on its own thread, with piped stdio.

stdin, stdout and stderr are named pipes (FIFOs) in a private temp folder: wasmtime opens them as
files, so the guest blocks on an empty stdin or a full stdout exactly as a native process would
(real back-pressure, large reads, no callbacks on wasmtime's own threads). Input goes straight
into the stdin pipe when nothing waits before it and the pipe takes it (a non-blocking write on
POSIX, so a caller such as the bridge's event loop never stalls), else a writer thread feeds it
from a queue; a reader thread per output turns bytes into events.

Every buffer is bounded (docs/security.md, "Host resources"): a stdout message over
`limits.message` ends the instance ("output" error), stderr lines are cut at STDERR_LINE, the
event queue of `recv()` holds EVENT_QUEUE_BYTES (then the readers wait, and so does the guest),
queued stdin MAX_PENDING_STDIN. After `terminate()` output is discarded, so a guest blocked
writing a full pipe wakes up and stops at its next epoch check.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import select
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

from ..manifest import Service
from . import framing
from .events import Event, Exited, Message, ServiceError, Stderr
from .hostpath import Root
from .net import NetSession
from .net import set_current as set_current_net
from .outputs import CHECK_EVERY, Outputs, OutputsOverLimit
from .poll import Waker, set_current
from .stdio import Stdio, grow_pipe, output_mode
from .wasmtime_ext import set_epoch_callback

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("wvwasi.service")

_ids = itertools.count(1)
#: Bytes of stdin queued in the host before `send`/`write_stdin` wait for the guest to read.
MAX_PENDING_STDIN = 16 << 20
#: A longer stderr line is delivered in pieces of this many bytes.
STDERR_LINE = 64 << 10
#: Bytes of queued events (spawned without `on_event`) before the output readers wait.
EVENT_QUEUE_BYTES = 8 << 20
#: Bytes of stderr a task (`capture`) keeps; the rest is counted, not stored.
CAPTURED_STDERR = 1 << 20
_EVENT_OVERHEAD = 64  # bytes charged per queued event on top of its data
_STOP_JOIN = 2.0  # seconds to wait for the stdin writer once the guest's ends are closed


@dataclass(frozen=True)
class Launch:
    """Everything an instance needs, already checked against the manifest by the host."""

    service: Service
    pre: wasmtime.InstancePre
    engine: wasmtime.Engine
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    preopens: tuple[tuple[Path, str, bool], ...]  # (host dir, guest path, writable)
    files: Mapping[str, bytes] = field(default_factory=dict)
    scratch: bool = False
    outputs: tuple[str, ...] = ()  # guest files read back at exit (outputs.py)
    memory: int | None = None
    timeout: float | None = None
    capture: bool = False  # collect raw stdout instead of decoding messages (tasks)
    opened: tuple[Root, ...] = ()  # the preopens' folders, held until wasmtime has opened them
    net: NetSession | None = None  # its `wvwasi_net` sockets, when services.X.net lists any

    def release(self) -> None:
        """Close the folders the host opened for this launch (idempotent)."""
        for root in self.opened:
            root.close()


class Instance:
    """A live service instance. Create through `ServiceHost.spawn`; events go to `on_event`.

    With `output_loop` (POSIX), stdout is read on that asyncio loop and its messages reach
    `on_event` there (or, if given, `on_messages`: all the messages of one read in one call): it
    must not block, and returns False when it takes no more output until `resume_output()` (the
    pipe then fills and the guest waits). Other events come from host threads as usual."""

    def __init__(
        self,
        launch: Launch,
        on_event: Callable[[Event], bool | None] | None = None,
        on_exit: Callable[[Instance], None] | None = None,
        *,
        temp_root: Path | None = None,
        output_loop: asyncio.AbstractEventLoop | None = None,
        on_messages: Callable[[list[bytes | str]], bool] | None = None,
    ) -> None:
        self.id = next(_ids)
        self.service = launch.service
        self._launch = launch
        self._events: deque[Event] = deque()
        self._queued = 0  # bytes charged for self._events
        self._event_ready = threading.Condition()
        self._on_event = on_event or self._queue_event
        self._on_exit = on_exit
        self._stop_reason: str | None = None
        self._stopping = threading.Event()  # set with _stop_reason; wakes sleeps and waits
        self._output_error: ServiceError | None = None
        self._deadline = time.monotonic() + launch.timeout if launch.timeout else None
        self._exited: Exited | None = None
        self._done = threading.Event()
        self._stdin = _StdinWriter()
        self.stdout = bytearray()  # raw stdout when launch.capture
        self.stderr = bytearray()
        self._max_message = launch.service.limits.message
        self._decoder = (
            None if launch.capture else framing.Decoder(launch.service.ipc, self._max_message)
        )
        self._stderr_pending = b""
        self._stderr_cut = 0  # captured stderr bytes not kept (over CAPTURED_STDERR)
        self._dir = Path(tempfile.mkdtemp(prefix=f"wvwasi-{self.service.name}-", dir=temp_root))
        loop = output_loop if not launch.capture and output_mode() == "fifo" else None
        # Only a loop may take a read's messages at once: a reader thread waits per message.
        self._on_messages = on_messages if loop is not None else None
        self._stdio = Stdio(self._dir, self._stdout_chunk, self._stderr_chunk, loop)
        limits = launch.service.limits
        self._outputs = Outputs(self._dir, launch.outputs, max_entries=limits.files,
                                max_bytes=limits.files_size, service=self.service.name
                                ) if launch.outputs else None
        self._outputs_checked = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, name=f"wvwasi:{self.service.name}#{self.id}", daemon=True
        )

    # -- the public API -------------------------------------------------------------------------

    def start(self) -> Instance:
        """Start the service's `_start` on its own thread."""
        self._thread.start()
        return self

    def send(self, message: bytes | str) -> None:
        """Deliver one message to the service, framed by its `ipc` mode."""
        self._stdin.write(framing.encode(self.service.ipc, message))

    def write_stdin(self, data: bytes) -> None:
        """Append raw bytes to the service's stdin."""
        self._stdin.write(bytes(data))

    def try_write_stdin(self, data: bytes) -> bool:
        """`write_stdin` that never waits: False (and nothing written) while MAX_PENDING_STDIN
        bytes are queued. BrokenPipeError once stdin is closed."""
        return self._stdin.write(bytes(data), wait=False)

    def close_stdin(self) -> None:
        """Signal end of input: the service's next read of stdin returns EOF."""
        self._stdin.close()

    def resume_output(self) -> None:
        """Read stdout again after `on_event` returned False (see the class docstring)."""
        self._stdio.resume_stdout()

    def terminate(self, reason: str = "terminated") -> None:
        """Stop the instance at its next epoch tick (also when blocked reading stdin, writing
        output or sleeping); output it writes from now on is discarded."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stopping.set()
        self._stdin.close()
        self._stdio.resume_stdout()  # output is discarded now: let a paused guest's pipe drain
        with self._event_ready:
            self._event_ready.notify_all()  # an output reader waiting for queue room

    def wait(self, timeout: float | None = None) -> Exited | None:
        """Block until the instance has exited; its `Exited` event, or None on timeout."""
        self._done.wait(timeout)
        return self._exited

    @property
    def alive(self) -> bool:
        """True until the instance has exited."""
        return not self._done.is_set()

    @property
    def stdin_unread(self) -> int:
        """Once exited: bytes given to `send`/`write_stdin` that the guest never read."""
        return self._stdin.unread

    def recv(self, timeout: float | None = None) -> Event | None:
        """Next queued event (only when the instance was spawned without `on_event`).

        At most EVENT_QUEUE_BYTES wait here: past that the service is paused until `recv`."""
        with self._event_ready:
            if not self._events:
                self._event_ready.wait_for(lambda: self._events, timeout)
            if not self._events:
                return None
            event = self._events.popleft()
            self._queued -= event_cost(event)
            self._event_ready.notify_all()
            return event

    # -- the instance thread --------------------------------------------------------------------

    def _queue_event(self, event: Event) -> None:
        cost = event_cost(event)
        with self._event_ready:
            if not isinstance(event, Exited):
                self._event_ready.wait_for(
                    lambda: not self._queued or self._queued + cost <= EVENT_QUEUE_BYTES
                    or self._stopping.is_set()
                )
                if self._stopping.is_set():
                    return
            self._events.append(event)
            self._queued += cost
            self._event_ready.notify_all()

    def _should_stop(self) -> str | None:
        return self._stop_reason

    def check_deadline(self) -> None:
        """Called by the host's ticker: past its timeout, stop (also a pending stdin read)."""
        if self._deadline and self.alive and time.monotonic() > self._deadline:
            self.terminate("timeout")
        if self._outputs is not None and self.alive and (
            time.monotonic() - self._outputs_checked > CHECK_EVERY
        ):
            self._outputs_checked = time.monotonic()
            try:
                self._outputs.check()
            except OutputsOverLimit as e:
                self._output_failed(str(e))

    def _run(self) -> None:
        store: wasmtime.Store | None = None
        stdio = self._stdio
        memory: wasmtime.Memory | None = None
        try:
            store = wasmtime.Store(self._launch.engine)
            if self._launch.memory:
                store.set_limits(memory_size=self._launch.memory)
            self._keepalive = set_epoch_callback(store, self._should_stop)
            wasi = self._wasi_config()
            try:
                self._stdin.start(stdio.configure(wasi))
                store.set_wasi(wasi)
            except BaseException:
                wasi.close()  # drops wasmtime's ends of the pipes: our readers see EOF
                raise
            set_current(Waker(self._stopping, self._stdin.state, time.monotonic(),
                              self._stdin.wait_change))
            if self._launch.net is not None:
                self._launch.net.bind(self._stopping)
            set_current_net(self._launch.net)
            instance = self._launch.pre.instantiate(store)
            exports = instance.exports(store)
            mem = exports.get("memory")
            memory = mem if isinstance(mem, wasmtime.Memory) else None
            start = exports["_start"]
            assert isinstance(start, wasmtime.Func)
            start(store)
            result = Exited(0)
        except wasmtime.ExitTrap as e:
            result = Exited(e.code)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
            result = self._failure(e, store, memory)
        except OSError as e:
            result = Exited(None, ServiceError("start", f"service '{self.service.name}': {e}"))
        except Exception as e:  # a bug in wvwasi: still end the instance with an Exited event
            log.exception("service '%s' crashed the host thread", self.service.name)
            result = Exited(None, ServiceError("start", f"service '{self.service.name}': {e!r}"))
        finally:
            self._launch.release()
            set_current(None)
            set_current_net(None)
            if self._launch.net is not None:
                self._launch.net.close()
            self._stdin.close()
            if store is not None:
                store.close()  # closes the guest's ends of the pipes: readers see EOF
            stdio.finish()
            self._stdin.join(_STOP_JOIN)
            self._flush_outputs()
            if (self._outputs is not None and result.code is not None
                    and self._output_error is None and self._stop_reason is None):
                try:
                    result = Exited(result.code, outputs=self._outputs.collect())
                except OutputsOverLimit as e:  # over its bounds: no files, an "output" error
                    name = self.service.name
                    self._output_error = ServiceError("output", f"service '{name}' {e}")
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._output_error is not None:
            result = Exited(None, self._output_error)
        elif self._stop_reason is not None and result.error is None:
            result = Exited(None, self._stop_error())
        self._exited = result
        if self._on_exit is not None:
            self._on_exit(self)
        if result.error:
            quiet = result.error.kind == "terminated"  # asked for: not worth a warning
            log.log(logging.INFO if quiet else logging.WARNING, "%s", result.error.message)
        self._on_event(result)
        self._done.set()

    def _stop_error(self) -> ServiceError:
        name = self.service.name
        if self._stop_reason == "timeout":
            limit = self._launch.timeout
            return ServiceError(
                "timeout", f"service '{name}' ran past its limits.timeout of {limit:g} s"
            )
        return ServiceError("terminated", f"service '{name}' was {self._stop_reason}")

    def _failure(
        self, e: Exception, store: wasmtime.Store | None, memory: wasmtime.Memory | None
    ) -> Exited:
        name = self.service.name
        if self._stop_reason is not None:
            return Exited(None, self._stop_error())
        text = str(e).strip()
        if store is None or (not isinstance(e, wasmtime.Trap) and "wasm backtrace" not in text):
            return Exited(None, ServiceError("start", f"service '{name}' failed to start: {text}"))
        limit = self._launch.memory
        if limit and memory is not None and store is not None:
            used = memory.data_len(store)
            if limit - used < min(limit // 8, 8 << 20):
                return Exited(
                    None,
                    ServiceError(
                        "memory",
                        f"service '{name}' hit its limits.memory of {limit >> 20} MiB "
                        f"(using {used >> 20} MiB) and then failed: {_first_line(text)}",
                    ),
                )
        return Exited(None, ServiceError("trap", f"service '{name}' trapped: {_first_line(text)}"))

    def _wasi_config(self) -> wasmtime.WasiConfig:
        launch = self._launch
        wasi = wasmtime.WasiConfig()
        wasi.argv = list(launch.argv)
        wasi.env = [list(kv) for kv in launch.env]
        try:
            for host, guest, writable in launch.preopens:
                wasi.preopen_dir(str(host), guest, fs_mutable=writable)
        finally:
            launch.release()  # wasmtime holds its own handles now
        if launch.files:
            wasi.preopen_dir(str(self._write_files()), "/", fs_mutable=False)
        if launch.scratch:
            scratch = self._dir / "scratch"
            scratch.mkdir()
            wasi.preopen_dir(str(scratch), "/scratch", fs_mutable=True)
        if self._outputs is not None:
            for host, guest in self._outputs.create():
                wasi.preopen_dir(str(host), guest, fs_mutable=True)

        return wasi

    def _write_files(self) -> Path:
        """Write SpawnOptions.files (normalized, checked by the host) into one private tree,
        preopened read-only at `/`: one folder handle however many folders the files are in.
        The guest's own preopens are longer prefixes, so they still win for their paths."""
        tree = self._dir / "files"
        tree.mkdir()
        for guest, content in self._launch.files.items():
            path = tree.joinpath(*guest.strip("/").split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            if os.name != "nt":  # read-only files block rmtree on Windows; the preopen is ro
                path.chmod(0o444)
        return tree

    def _stdout_chunk(self, chunk: bytes) -> bool:
        """Hand `chunk`'s messages on; False when `on_event` wants reading paused."""
        if self._stopping.is_set():
            return True  # terminated (or over a limit): drain the pipe so the guest can stop
        if self._decoder is None:
            if len(self.stdout) + len(chunk) > self._max_message:
                self._output_failed(
                    f"wrote more than {self._max_message} bytes to stdout (its limits.message)"
                )
                return True
            self.stdout += chunk
            return True
        try:
            messages = self._decoder.feed(chunk)
        except framing.MessageTooLong as e:
            self._output_failed(str(e))
            return True
        if self._on_messages is not None:
            return self._on_messages(messages) if messages else True
        more = True
        for message in messages:
            if self._stopping.is_set():
                return True
            if self._on_event(Message(message)) is False:
                more = False
        return more

    def _output_failed(self, what: str) -> None:
        """The guest broke an output limit: end it with an "output" error."""
        self._output_error = ServiceError("output", f"service '{self.service.name}' {what}")
        self.terminate("ended for its output")

    def _stderr_chunk(self, chunk: bytes) -> None:
        if self._stopping.is_set():
            return
        if self._launch.capture:
            keep = max(0, CAPTURED_STDERR - len(self.stderr))
            self.stderr += chunk[:keep]
            self._stderr_cut += len(chunk) - len(chunk[:keep])
        *lines, pending = (self._stderr_pending + chunk).split(b"\n")
        for line in lines:
            if self._stopping.is_set():
                return  # a 1 MiB chunk can hold 100k lines: stop discarding them at once
            for start in range(0, max(len(line), 1), STDERR_LINE):
                self._stderr_line(self.service.name, line[start : start + STDERR_LINE])
        while len(pending) > STDERR_LINE:
            self._stderr_line(self.service.name, pending[:STDERR_LINE])
            pending = pending[STDERR_LINE:]
        self._stderr_pending = pending

    def _flush_outputs(self) -> None:
        """At the end of output: a last unterminated line is still a message / stderr line."""
        if self._decoder is not None and not self._stopping.is_set():
            for message in self._decoder.finish():
                self._on_event(Message(message))
        if self._stderr_cut:
            self.stderr += f"\n[wvwasi: {self._stderr_cut} more bytes of stderr cut]\n".encode()
        if self._stderr_pending and not self._stopping.is_set():
            self._stderr_line(self.service.name, self._stderr_pending)
            self._stderr_pending = b""

    def _stderr_line(self, name: str, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        log.info("[%s] %s", name, text)
        if not self._launch.capture:
            self._on_event(Stderr(text))


def event_cost(event: Event) -> int:
    """What a queued event counts against EVENT_QUEUE_BYTES."""
    if isinstance(event, Message):
        return len(event.data) + _EVENT_OVERHEAD
    if isinstance(event, Stderr):
        return len(event.text) + _EVENT_OVERHEAD
    return _EVENT_OVERHEAD


def _first_line(text: str) -> str:
    """The cause of a wasmtime error, without its backtrace."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if "Caused by:" in lines:
        rest = lines[lines.index("Caused by:") + 1 :]
        if rest:
            return rest[0].removeprefix("0: ")
    return lines[0] if lines else "unknown error"


class _StdinWriter:
    """Feeds a FIFO. A write that finds nothing queued goes straight into the pipe from the
    caller's thread (non-blocking on POSIX: the caller never waits for the guest); the rest waits
    for the writer thread, in order, so `write()` never blocks the caller for long.

    When it stops, `unread` is what the guest never read: bytes still queued plus those left
    in the pipe."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._pending = 0
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # the pipe changed: written, drained or closed
        self._work = threading.Condition(lock)  # for the writer thread: input queued, or closed
        self._fd: int | None = None
        self._direct = False  # the fd is non-blocking: callers may write to it themselves
        self._busy = False  # the writer thread is writing a batch outside the lock
        self._closed = False
        self._thread: threading.Thread | None = None
        self.unread = 0

    def start(self, fd: int) -> None:
        """Begin feeding `fd` (the FIFO's write end, once the guest has opened the read end)."""
        grow_pipe(fd)
        direct = sys.platform != "win32"  # a Windows named pipe stays blocking: thread only
        if direct:
            os.set_blocking(fd, False)
        with self._cond:
            self._fd = fd
            self._direct = direct
        self._thread = threading.Thread(target=self._pump, args=(fd,), name="wvwasi:stdin",
                                        daemon=True)
        self._thread.start()

    def write(self, data: bytes, *, wait: bool = True) -> bool:
        """Write `data` now if the pipe takes it, else queue it for the writer thread. Over
        MAX_PENDING_STDIN queued it waits, or with `wait=False` returns False (nothing written)."""
        with self._cond:
            if self._closed:
                raise BrokenPipeError(errno.EPIPE, "the service's stdin is closed")
            while self._pending > MAX_PENDING_STDIN and not self._closed:
                if not wait:
                    return False
                self._cond.wait()
            if self._direct and self._fd is not None and not self._chunks and not self._busy:
                try:
                    data = data[os.write(self._fd, data) :]
                except BlockingIOError:
                    pass  # the pipe is full: the writer thread waits for room
                except OSError:  # the guest closed its end: as the writer thread would
                    self._closed = True
                    self._cond.notify_all()
                    raise BrokenPipeError(errno.EPIPE, "the service's stdin is closed") from None
                if not data:
                    self._cond.notify_all()  # a poll_oneoff waiting on stdin (wait_change)
                    return True
            self._chunks.append(data)
            self._pending += len(data)
            self._cond.notify_all()
            self._work.notify()
            return True

    def close(self) -> None:
        """No more input: the pump writes what is queued, then closes the pipe (EOF)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._work.notify()

    def state(self) -> tuple[int | None, bool]:
        """(bytes in the pipe the guest has not read, None if unknown; whether it is closed)."""
        with self._cond:
            if self._fd is None:
                return 0, self._closed
            return _bytes_in_pipe(self._fd), False

    def wait_change(self, timeout: float) -> None:
        """Wait up to `timeout` s for the next write to the pipe, or its closing."""
        with self._cond:
            self._cond.wait(timeout)

    def join(self, timeout: float) -> None:
        """Wait for the pump to finish (call once the guest's end of the pipe is closed)."""
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            with self._cond:
                self.unread = self._pending

    def _pump(self, fd: int) -> None:
        poll = select.poll() if self._direct else None  # wait for room in a non-blocking pipe
        if poll is not None:
            poll.register(fd, select.POLLOUT)
        view = memoryview(b"")
        try:
            while True:
                with self._cond:
                    while not self._chunks and not self._closed:
                        self._work.wait()
                    if not self._chunks:
                        return
                    data = b"".join(self._chunks)
                    self._chunks.clear()
                    self._busy = True
                view = memoryview(data)
                while view:
                    try:
                        view = view[os.write(fd, view) :]
                    except BlockingIOError:
                        assert poll is not None
                        poll.poll()  # until the guest reads (or closes its end: EPIPE next)
                with self._cond:
                    self._pending -= len(data)
                    self._busy = False
                    self._cond.notify_all()
        except OSError:
            pass  # the service exited or closed stdin; later writes are dropped
        finally:
            with self._cond:
                self._closed = True
                self._busy = False
                in_pipe = _bytes_in_pipe(fd) or 0
                self.unread = sum(map(len, self._chunks)) + len(view) + in_pipe
                self._chunks.clear()
                self._cond.notify_all()
                os.close(fd)
                self._fd = None


def _bytes_in_pipe(fd: int) -> int | None:
    """Bytes written to a pipe and not yet read (None where FIONREAD is unsupported)."""
    if sys.platform == "win32":  # pragma: no cover - a named pipe; not counted
        return None
    import fcntl
    import termios

    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf)
    except OSError:
        return None
    return int.from_bytes(buf, "little")


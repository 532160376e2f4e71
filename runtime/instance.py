"""One running service instance: a wasmtime Store on its own thread, with piped stdio.

stdin, stdout and stderr are named pipes (FIFOs) in a private temp folder: wasmtime opens them as
files, so the guest blocks on an empty stdin or a full stdout exactly as a native process would
(real back-pressure, large reads, no callbacks on wasmtime's own threads). A writer thread feeds
stdin from a queue; a reader thread per output turns bytes into events.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from . import framing
from .events import Event, Exited, Message, ServiceError, Stderr
from .manifest import Preopen, Service
from .stdio import Stdio, grow_pipe
from .wasmtime_ext import set_epoch_callback

log = logging.getLogger("wvwasi.service")

_ids = itertools.count(1)
_MAX_PENDING_STDIN = 16 << 20


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
    memory: int | None = None
    timeout: float | None = None
    capture: bool = False  # collect raw stdout instead of decoding messages (tasks)


class Instance:
    """A live service instance. Create through `ServiceHost.spawn`; events go to `on_event`."""

    def __init__(
        self,
        launch: Launch,
        on_event: Callable[[Event], None] | None = None,
        on_exit: Callable[[Instance], None] | None = None,
    ) -> None:
        self.id = next(_ids)
        self.service = launch.service
        self._launch = launch
        self._events: deque[Event] = deque()
        self._event_ready = threading.Condition()
        self._on_event = on_event or self._queue_event
        self._on_exit = on_exit
        self._stop_reason: str | None = None
        self._deadline = time.monotonic() + launch.timeout if launch.timeout else None
        self._exited: Exited | None = None
        self._done = threading.Event()
        self._stdin = _StdinWriter()
        self.stdout = bytearray()  # raw stdout when launch.capture
        self.stderr = bytearray()
        self._decoder = None if launch.capture else framing.Decoder(launch.service.ipc)
        self._stderr_pending = b""
        self._dir = Path(tempfile.mkdtemp(prefix=f"wvwasi-{self.service.name}-"))
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

    def close_stdin(self) -> None:
        """Signal end of input: the service's next read of stdin returns EOF."""
        self._stdin.close()

    def terminate(self, reason: str = "terminated") -> None:
        """Stop the instance at its next epoch tick (also when blocked reading stdin)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stdin.close()

    def wait(self, timeout: float | None = None) -> Exited | None:
        """Block until the instance has exited; its `Exited` event, or None on timeout."""
        self._done.wait(timeout)
        return self._exited

    @property
    def alive(self) -> bool:
        """True until the instance has exited."""
        return not self._done.is_set()

    def recv(self, timeout: float | None = None) -> Event | None:
        """Next queued event (only when the instance was spawned without `on_event`)."""
        with self._event_ready:
            if not self._events:
                self._event_ready.wait(timeout)
            return self._events.popleft() if self._events else None

    # -- the instance thread --------------------------------------------------------------------

    def _queue_event(self, event: Event) -> None:
        with self._event_ready:
            self._events.append(event)
            self._event_ready.notify()

    def _should_stop(self) -> str | None:
        return self._stop_reason

    def check_deadline(self) -> None:
        """Called by the host's ticker: past its timeout, stop (also a pending stdin read)."""
        if self._deadline and self.alive and time.monotonic() > self._deadline:
            self.terminate("timeout")

    def _run(self) -> None:
        store: wasmtime.Store | None = None
        stdio = Stdio(self._dir, self._stdout_chunk, self._stderr_chunk)
        memory: wasmtime.Memory | None = None
        try:
            store = wasmtime.Store(self._launch.engine)
            if self._launch.memory:
                store.set_limits(memory_size=self._launch.memory)
            self._keepalive = set_epoch_callback(store, self._should_stop)
            wasi = self._wasi_config()
            self._stdin.start(stdio.configure(wasi))
            store.set_wasi(wasi)
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
            self._stdin.close()
            if store is not None:
                store.close()  # closes the guest's ends of the pipes: readers see EOF
            stdio.finish()
            self._flush_outputs()
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._stop_reason is not None and result.error is None:
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
        for host, guest, writable in launch.preopens:
            wasi.preopen_dir(str(host), guest, fs_mutable=writable)
        for guest_dir, folder in self._file_folders().items():
            wasi.preopen_dir(str(folder), guest_dir, fs_mutable=False)
        if launch.scratch:
            scratch = self._dir / "scratch"
            scratch.mkdir()
            wasi.preopen_dir(str(scratch), "/scratch", fs_mutable=True)

        return wasi

    def _file_folders(self) -> dict[str, Path]:
        """Write SpawnOptions.files into one private folder per guest directory."""
        folders: dict[str, Path] = {}
        for guest, content in self._launch.files.items():
            guest_dir, _, name = guest.rpartition("/")
            guest_dir = guest_dir or "/"
            folder = folders.get(guest_dir)
            if folder is None:
                folder = folders[guest_dir] = self._dir / f"files{len(folders)}"
                folder.mkdir()
            (folder / name).write_bytes(content)
            if os.name != "nt":  # read-only files block rmtree on Windows; the preopen is ro
                (folder / name).chmod(0o444)
        return folders

    def _stdout_chunk(self, chunk: bytes) -> None:
        if self._decoder is None:
            self.stdout += chunk
            return
        for message in self._decoder.feed(chunk):
            self._on_event(Message(message))

    def _stderr_chunk(self, chunk: bytes) -> None:
        if self._launch.capture:
            self.stderr += chunk
        *lines, self._stderr_pending = (self._stderr_pending + chunk).split(b"\n")
        for line in lines:
            self._stderr_line(self.service.name, line)

    def _flush_outputs(self) -> None:
        """At the end of output: a last unterminated line is still a message / stderr line."""
        if self._decoder is not None:
            for message in self._decoder.finish():
                self._on_event(Message(message))
        if self._stderr_pending:
            self._stderr_line(self.service.name, self._stderr_pending)
            self._stderr_pending = b""

    def _stderr_line(self, name: str, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        log.info("[%s] %s", name, text)
        if not self._launch.capture:
            self._on_event(Stderr(text))


def _first_line(text: str) -> str:
    """The cause of a wasmtime error, without its backtrace."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if "Caused by:" in lines:
        rest = lines[lines.index("Caused by:") + 1 :]
        if rest:
            return rest[0].removeprefix("0: ")
    return lines[0] if lines else "unknown error"


class _StdinWriter:
    """Feeds a FIFO from a thread, so `write()` never blocks the caller for long."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._fd: int | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def start(self, fd: int) -> None:
        """Begin feeding `fd` (the FIFO's write end, once the guest has opened the read end)."""
        grow_pipe(fd)
        self._fd = fd
        self._thread = threading.Thread(target=self._pump, name="wvwasi:stdin", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        with self._cond:
            if self._closed:
                raise BrokenPipeError(errno.EPIPE, "the service's stdin is closed")
            while self._pending > _MAX_PENDING_STDIN and not self._closed:
                self._cond.wait()
            self._chunks.append(data)
            self._pending += len(data)
            self._cond.notify_all()

    def close(self) -> None:
        """No more input: the pump writes what is queued, then closes the pipe (EOF)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _pump(self) -> None:
        fd = self._fd
        assert fd is not None
        try:
            while True:
                with self._cond:
                    while not self._chunks and not self._closed:
                        self._cond.wait()
                    if not self._chunks:
                        return
                    data = b"".join(self._chunks)
                    self._chunks.clear()
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                with self._cond:
                    self._pending -= len(data)
                    self._cond.notify_all()
        except OSError:
            pass  # the service exited or closed stdin; later writes are dropped
        finally:
            with self._cond:
                self._closed = True
                self._chunks.clear()
                self._cond.notify_all()
            os.close(fd)


def resolve_preopens(
    preopens: tuple[Preopen, ...], resolve: Callable[[str], Path]
) -> tuple[tuple[Path, str, bool], ...]:
    """Manifest preopens as (existing host dir, guest path, writable)."""
    out = []
    for p in preopens:
        host = resolve(p.host)
        if not host.is_dir():
            raise FileNotFoundError(f"preopen {p.guest}: host folder {host} does not exist")
        out.append((host, p.guest, p.mode == "rw"))
    return tuple(out)

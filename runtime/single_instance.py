"""One running instance per user and app: a later launch hands its command line to it.

The first launch holds an exclusive lock on `<dir>/<id>.lock` for as long as it runs and
listens on `<dir>/<id>.sock` (a Unix socket; where there is none, Windows, a loopback TCP port
written to `<id>.port`). `<dir>` is a per-user folder only its owner may enter
(`$XDG_RUNTIME_DIR/wvwasi`, else `<temp>/wvwasi-<uid>`, mode 0700, checked to be the user's own
real folder), `<id>` a hash of the app identifier. A later launch finds the lock taken, connects
and must prove it can read `<id>.key` (32 random bytes, mode 0600, new for every first
instance): the listener sends a fresh nonce, the launch answers with its message (JSON: argv and
cwd) and HMAC-SHA256(key, nonce + message). A wrong or missing HMAC is refused (the connection
is closed, the app keeps running). Bounds: MAX_MESSAGE bytes a message, READ_TIMEOUT s to send
it, MAX_CONNECTIONS connections read at once (further ones are closed at once).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

log = logging.getLogger("wvwasi.single_instance")

Transport = Literal["unix", "tcp"]
MAX_MESSAGE = 64 << 10
READ_TIMEOUT = 2.0
MAX_CONNECTIONS = 8
NONCE = 32
_DOMAIN = b"wvwasi-single-instance\0"
_OK = b"OK"


class ForwardError(OSError):
    """The running instance could not be reached or did not accept the message."""


def default_transport() -> Transport:
    return "unix" if hasattr(socket, "AF_UNIX") else "tcp"


def user_dir() -> Path:
    """The per-user folder for the lock, key and socket, created if need be; OSError if it is
    not the user's own private folder (another user planted it, or it is a link)."""
    if sys.platform == "win32":  # per-user by its ACL
        base = Path(os.environ.get("LOCALAPPDATA") or tempfile.gettempdir()) / "wvwasi" / "run"
        base.mkdir(parents=True, exist_ok=True)
        return base
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and _private(Path(runtime)):
        folder = Path(runtime) / "wvwasi"
    else:
        folder = Path(tempfile.gettempdir()) / f"wvwasi-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    if not _private(folder):
        raise OSError(f"{folder} is not a private folder of this user (mode 0700, owned by "
                      f"uid {os.getuid()}, no link)")
    return folder


def _private(folder: Path) -> bool:
    try:
        st = folder.lstat()
    except OSError:
        return False
    return folder.is_dir() and not folder.is_symlink() and st.st_uid == os.getuid() \
        and st.st_mode & 0o077 == 0


def _name(identifier: str) -> str:
    return hashlib.sha256(identifier.encode()).hexdigest()[:24]


def mac(key: bytes, nonce: bytes, message: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + nonce + message, hashlib.sha256).digest()


class Primary:
    """The first instance: holds the lock; `serve()` accepts forwarded launches."""

    def __init__(self, folder: Path, name: str, lock: BinaryIO, transport: Transport) -> None:
        self.folder = folder
        self.name = name
        self.transport = transport
        self._lock = lock
        self._key = secrets.token_bytes(32)
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._closed = False

    @property
    def key_path(self) -> Path:
        return self.folder / f"{self.name}.key"

    def serve(self, on_message: Callable[[dict[str, Any]], None]) -> None:
        """Write the key, listen, and call `on_message(message)` (on a listener thread) for
        each authenticated launch."""
        tmp = self.folder / f"{self.name}.key.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self._key)
        os.replace(tmp, self.key_path)
        if self.transport == "unix":
            path = self.folder / f"{self.name}.sock"
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with unix_address(path) as address:
                server.bind(address)
        else:
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.bind(("127.0.0.1", 0))
            port = self.folder / f"{self.name}.port"
            port.write_text(str(server.getsockname()[1]), encoding="ascii")
        server.listen(MAX_CONNECTIONS)
        self._server = server
        self._thread = threading.Thread(target=self._accept, args=(on_message,),
                                        name="wvwasi-single-instance", daemon=True)
        self._thread.start()

    def _accept(self, on_message: Callable[[dict[str, Any]], None]) -> None:
        assert self._server is not None
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            if not self._slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._handle, args=(conn, on_message),
                             name="wvwasi-single-instance-conn", daemon=True).start()

    def _handle(self, conn: socket.socket, on_message: Callable[[dict[str, Any]], None]) -> None:
        try:
            with conn:
                conn.settimeout(READ_TIMEOUT)
                deadline = time.monotonic() + READ_TIMEOUT
                nonce = secrets.token_bytes(NONCE)
                conn.sendall(nonce)
                (size,) = struct.unpack(">I", _recv(conn, 4, deadline))
                if size > MAX_MESSAGE:
                    raise ForwardError(f"message of {size} bytes (at most {MAX_MESSAGE})")
                body = _recv(conn, size, deadline)
                if not hmac.compare_digest(_recv(conn, 32, deadline),
                                           mac(self._key, nonce, body)):
                    raise ForwardError("wrong HMAC: the sender does not know the key")
                message = json.loads(body)
                if not isinstance(message, dict):
                    raise ForwardError("the message is not a JSON object")
                conn.sendall(_OK)
            on_message(message)
        except (OSError, ValueError) as e:
            log.warning("single instance: refused a connection: %s", e)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Stop listening, remove the socket and key, release the lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
        if self._thread is not None:
            self._thread.join(1)
        for suffix in (".sock", ".port", ".key"):
            with contextlib.suppress(OSError):
                (self.folder / f"{self.name}{suffix}").unlink()
        self._lock.close()


def _recv(conn: socket.socket, n: int, deadline: float) -> bytes:
    data = bytearray()
    while len(data) < n:
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ForwardError("the connection closed early")
        data += chunk
    return bytes(data)


def _try_lock(f: BinaryIO) -> bool:
    """Take an exclusive, non-blocking lock on open file `f` (released when it is closed)."""
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def acquire(identifier: str, *, folder: Path | None = None,
            transport: Transport | None = None) -> Primary | None:
    """This process as the app's first instance (lock held), or None when one already runs."""
    folder = folder or user_dir()
    name = _name(identifier)
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    lock = os.fdopen(fd, "r+b")
    if not _try_lock(lock):
        lock.close()
        return None
    return Primary(folder, name, lock, transport or default_transport())


def forward(identifier: str, message: dict[str, Any], *, folder: Path | None = None,
            transport: Transport | None = None, timeout: float = 5.0) -> None:
    """Hand `message` to the running instance; ForwardError if it cannot be reached within
    `timeout` s (e.g. it is still starting, or it exited) or refuses it."""
    folder = folder or user_dir()
    name = _name(identifier)
    body = json.dumps(message).encode()
    if len(body) > MAX_MESSAGE:
        raise ForwardError(f"the command line is too long to forward ({len(body)} bytes)")
    deadline = time.monotonic() + timeout
    while True:  # until a listener's slot takes us (each sends a nonce), or the deadline
        try:
            conn = _connect(folder, name, transport or default_transport())
        except (OSError, ValueError) as e:  # ValueError: a half-written port file
            if time.monotonic() > deadline:
                raise ForwardError(f"no running instance answered: {e}") from None
            time.sleep(0.05)
            continue
        try:
            key = (folder / f"{name}.key").read_bytes()
            nonce = _recv(conn, NONCE, deadline)
            break
        except OSError as e:  # closed at once: every reading slot is taken
            conn.close()
            if time.monotonic() > deadline:
                raise ForwardError(f"the running instance did not take the message: {e}") \
                    from None
            time.sleep(0.05)
    with conn:
        conn.sendall(struct.pack(">I", len(body)) + body + mac(key, nonce, body))
        if _recv(conn, len(_OK), deadline) != _OK:
            raise ForwardError("the running instance did not accept the message")


def _connect(folder: Path, name: str, transport: Transport) -> socket.socket:
    if transport == "unix":
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with unix_address(folder / f"{name}.sock") as address:
                conn.connect(address)
        except OSError:
            conn.close()
            raise
        return conn
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        conn.connect(("127.0.0.1", int((folder / f"{name}.port").read_text(encoding="ascii"))))
    except OSError:
        conn.close()
        raise
    return conn


#: Longest AF_UNIX path (sun_path is 108 bytes on Linux, 104 on macOS, with its NUL).
MAX_UNIX_PATH = 103


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """`path` as a socket address; a longer path than sun_path holds goes through the folder's
    descriptor (/proc/self/fd/N/NAME, Linux), so a deep per-user folder still works."""
    if len(os.fsencode(path)) <= MAX_UNIX_PATH or not os.path.isdir("/proc/self/fd"):
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)

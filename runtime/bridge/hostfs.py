"""A host folder lent to a page-supplied module: its WASI file calls, run beneath a `Root`.

A page-supplied module runs in the page's browser engine (never natively); when the page gives it
a folder of the machine (a `requestDirectory()` grant or a `[page] preopens` entry), the engine
has the page relay each file call on that folder to the bridge (an FS_CALL record on its
WebSocket, runtime/bridge/mounts.py), which answers it here. The rules are those of native
services: every path is opened beneath the folder (`..`, absolute paths and symlinks that lead
out fail with EPERM, also for a link swapped in between two calls), a read-only folder refuses
every change (EPERM), only regular files and folders are opened, and each call moves at most
`MAX_IO` bytes. Open files and folders are handles in a table bounded per
folder (`MAX_HANDLES`) and per page (`HandleBudget`); `close()` releases them all (the worker
ended or its page left).

Wire format of one call, both ways: `u32 LE length + JSON object + bytes` (`encode`/`decode`);
an answer's JSON stays under MAX_JSON (folder listings come in parts) and its bytes under MAX_IO.
The bridge relays calls as FS_CALL records (runtime/bridge/mounts.py).

This module is what every OS shares (the wire, the handle table and its bounds, argument checks,
the read-only rules); the system calls are in hostfs_posix.py (openat2 beneath a descriptor) and
hostfs_win.py (NtCreateFile beneath a handle).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from ..host.hostpath import EscapeError, Root
from .protocol import parse_json

log = logging.getLogger("wvwasi.bridge")

#: The most bytes one read or write call moves (the page splits bigger writes).
MAX_IO = 512 << 10
#: Open handles (files and folders) of one mounted folder.
MAX_HANDLES = 64
#: Names one folder listing returns (a longer folder lists its first ones).
MAX_LISTING = 16384
#: The largest JSON part of a call.
MAX_JSON = 64 << 10

_U32 = struct.Struct("<I")

# WASI preview1 errno values (wasi-core.js ERRNO)
_WASI = {
    errno.EACCES: 2, errno.EAGAIN: 6, errno.EBADF: 8, errno.EBUSY: 10, errno.EEXIST: 20,
    errno.EFBIG: 22, errno.EINVAL: 28, errno.EIO: 29, errno.EISDIR: 31, errno.ELOOP: 32,
    errno.EMFILE: 33, errno.ENAMETOOLONG: 37, errno.ENOENT: 44, errno.ENOSPC: 51,
    errno.ENOTDIR: 54, errno.ENOTEMPTY: 55, errno.EOPNOTSUPP: 58, errno.EOVERFLOW: 61,
    errno.EPERM: 63, errno.EROFS: 69, errno.ESPIPE: 70, errno.EXDEV: 75, errno.EDQUOT: 19,
    errno.EILSEQ: 25,
}
ACCES, BADF, EXIST, INVAL, IO, ISDIR, MFILE, NOENT, NOTDIR, PERM, BUSY = (
    2, 8, 20, 28, 29, 31, 33, 44, 54, 63, 10)


class WasiFail(Exception):
    """A call that fails with WASI errno `code`."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def wasi_errno(e: OSError) -> int:
    """The WASI errno for a host error; a path leading out of the folder is EPERM."""
    if isinstance(e, EscapeError):
        return PERM
    return _WASI.get(e.errno or 0, IO)


def encode(head: dict[str, Any], data: bytes = b"") -> bytes:
    """One call or answer: JSON head + raw bytes."""
    raw = json.dumps(head, separators=(",", ":")).encode()
    return _U32.pack(len(raw)) + raw + data


def decode(body: bytes) -> tuple[dict[str, Any], bytes]:
    """(JSON head, bytes) of a call; ValueError when it is malformed."""
    if len(body) < 4:
        raise ValueError("a call starts with a u32 JSON length")
    (size,) = _U32.unpack_from(body)
    if size > MAX_JSON or 4 + size > len(body):
        raise ValueError("bad JSON length")
    head = parse_json(body[4:4 + size])  # ProtocolError (a ValueError) when malformed
    if not isinstance(head, dict) or not isinstance(head.get("op"), str):
        raise ValueError("a call is a JSON object with an op")
    return head, body[4 + size:]


class HandleBudget:
    """Handles all folders of one page (or of the whole bridge) may hold at once."""

    def __init__(self, limit: int, parent: HandleBudget | None = None) -> None:
        self.limit = limit
        self.parent = parent
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            if self.parent is not None and not self.parent.take():
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used -= 1
        if self.parent is not None:
            self.parent.give()


class _Handle:
    def __init__(self, fd: int, is_dir: bool, writable: bool) -> None:
        self.fd = fd  # a POSIX descriptor, or a Windows handle (hostfs_win.py)
        self.is_dir = is_dir
        self.writable = writable
        self.listing: list[tuple[str, int, int]] | None = None


class HostFolder:
    """One mounted folder: handle 0 is the folder itself. Calls are serialized (`call`).

    What does not depend on the OS is here: the wire, the handle table and its bounds, argument
    checks and the read-only rules. The system calls are the subclass's (`lend` picks it):
    hostfs_posix.PosixHostFolder, hostfs_win.WinHostFolder."""

    def __init__(self, root: Root, mode: Literal["ro", "rw"], budget: HandleBudget) -> None:
        if not budget.take():
            root.close()
            raise OSError(errno.EMFILE, "too many open files and folders")
        fd = self._take_root(root)  # the folder's handle 0 owns it from here
        self.mode = mode
        self._budget = budget
        self._lock = threading.Lock()
        self._handles: dict[int, _Handle] = {0: _Handle(fd, True, mode == "rw")}
        self._next = 1
        self._closed = False
        self._ops: dict[str, Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]]] = {
            "open": self._open, "close": self._close, "read": self._read, "write": self._write,
            "seek": self._seek, "stat": self._stat, "pstat": self._pstat,
            "readdir": self._readdir, "mkdir": self._mkdir, "rmdir": self._rmdir,
            "unlink": self._unlink, "rename": self._rename, "symlink": self._symlink,
            "readlink": self._readlink, "link": self._link, "truncate": self._truncate,
            "times": self._times, "sync": self._sync,
        }

    # -- the entry point ------------------------------------------------------------------------

    def call(self, body: bytes) -> bytes:
        """Answer one encoded call: `{errno: 0, ...}` + bytes, or `{errno: N}`."""
        try:
            head, data = decode(body)
        except ValueError:
            return encode({"errno": INVAL})
        try:
            with self._lock:
                if self._closed:
                    return encode({"errno": BADF})
                op = self._ops.get(head["op"])
                if op is None:
                    return encode({"errno": 52})  # NOSYS
                try:
                    out, extra = op(head, data)
                except WasiFail as e:
                    return encode({"errno": e.code})
                except OSError as e:
                    return encode({"errno": wasi_errno(e)})
                except (KeyError, TypeError, ValueError, OverflowError):
                    return encode({"errno": INVAL})
        finally:
            if self._closed:  # closed while this call ran: its handles are released now
                self._release()
        return encode({"errno": 0, **out}, extra)

    def close(self) -> None:
        """Close every handle (idempotent). Never waits (it is called on the bridge's loop):
        during a call, the call releases them when it ends."""
        self._closed = True
        self._release()

    def _release(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # a call runs: it releases them (it sees _closed once it has the lock freed)
        try:
            for handle in self._handles.values():
                self._close_fd(handle.fd)
                self._budget.give()
            self._handles.clear()
        finally:
            self._lock.release()

    # -- the system's side (each OS's subclass) -------------------------------------------------

    @staticmethod
    def _take_root(root: Root) -> int:
        """The root's descriptor or handle, taken from it."""
        raise NotImplementedError

    @staticmethod
    def _close_fd(fd: int) -> None:
        raise NotImplementedError

    def _entries(self, fd: int) -> Iterator[tuple[str, int, int]]:
        """(name, WASI filetype, file id) of each entry of folder `fd`, `.` and `..` left out."""
        raise NotImplementedError

    def _file_id(self, fd: int) -> int:
        raise NotImplementedError

    def _fstat(self, fd: int) -> dict[str, Any]:
        """The call's answer for `stat` of `fd` (dev, ino, type, nlink, size, times)."""
        raise NotImplementedError

    def _read_at(self, fd: int, size: int, at: int | None) -> bytes:
        """Up to `size` bytes from the position, or from offset `at` (the position kept)."""
        raise NotImplementedError

    def _write_at(self, fd: int, data: bytes, at: int | None, append: bool) -> int:
        """Write at the position, at offset `at` (the position kept), or at the end."""
        raise NotImplementedError

    def _seek_to(self, fd: int, offset: int, whence: int) -> int:
        raise NotImplementedError

    def _size(self, fd: int) -> int:
        raise NotImplementedError

    def _set_size(self, fd: int, size: int) -> None:
        raise NotImplementedError

    def _flush(self, handle: _Handle) -> None:
        """Flush file `handle` to storage (if this OS allows it on that handle)."""
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------------------------

    def _handle(self, head: dict[str, Any], key: str = "h") -> _Handle:
        h = head[key]
        if not isinstance(h, int) or h not in self._handles:
            raise WasiFail(BADF)
        return self._handles[h]

    def _folder(self, head: dict[str, Any], key: str = "h") -> _Handle:
        """The call's folder handle; NOTDIR for a file."""
        handle = self._handle(head, key)
        if not handle.is_dir:
            raise WasiFail(NOTDIR)
        return handle

    def _writable_file(self, head: dict[str, Any]) -> _Handle:
        """The call's file handle, opened for writing on a read-write mount."""
        handle = self._handle(head)
        if handle.is_dir:
            raise WasiFail(ISDIR)
        if not handle.writable or self.mode != "rw":
            raise WasiFail(BADF)
        return handle

    def _writable(self) -> None:
        if self.mode != "rw":
            raise WasiFail(PERM)

    @staticmethod
    def _path(head: dict[str, Any], key: str = "path") -> str:
        path = head[key]
        if not isinstance(path, str):
            raise WasiFail(INVAL)
        if "\0" in path:
            raise WasiFail(25)  # ILSEQ
        if path == "":
            raise WasiFail(NOENT)
        if path.startswith("/"):
            raise WasiFail(PERM)  # absolute: never outside the folder (as natively)
        return path

    @staticmethod
    def _link_target(head: dict[str, Any]) -> str:
        """A `symlink` call's target text (INVAL when it is not text or holds NUL)."""
        target = head["target"]
        if not isinstance(target, str) or "\0" in target:
            raise WasiFail(INVAL)
        return target

    def _new_handle(self, fd: int, is_dir: bool, writable: bool) -> int:
        if len(self._handles) > MAX_HANDLES or not self._budget.take():
            self._close_fd(fd)
            raise WasiFail(MFILE)
        h = self._next
        self._next += 1
        self._handles[h] = _Handle(fd, is_dir, writable)
        return h

    def _open_request(self, head: dict[str, Any]) -> tuple[str, bool, bool, bool, bool, bool]:
        """(path, read, write, creat, excl, trunc) of an `open` call; EPERM for writing or
        truncating in a read-only folder."""
        path = self._path(head)
        write, read = bool(head.get("write")), bool(head.get("read", True))
        creat, excl = bool(head.get("creat")), bool(head.get("excl"))
        trunc = bool(head.get("trunc"))
        if self.mode != "rw" and (write or trunc):
            raise WasiFail(PERM)
        return path, read, write, creat, excl, trunc

    def _times_wanted(self, head: dict[str, Any], atime_ns: int, mtime_ns: int
                      ) -> tuple[int, int]:
        """(access, modification) times in ns a `times` call sets, from the file's current
        ones; EPERM in a read-only folder."""
        self._writable()
        now = time.time_ns()
        atim = now if head.get("atimNow") else atime_ns if head.get("atim") is None \
            else int(head["atim"])
        mtim = now if head.get("mtimNow") else mtime_ns if head.get("mtim") is None \
            else int(head["mtim"])
        return atim, mtim

    def _list(self, fd: int) -> list[tuple[str, int, int]]:
        """`.`, `..` and up to MAX_LISTING names of folder `fd`: (name, WASI filetype, file
        id). Names that are not UTF-8 are left out (the page's engine and its JSON carry text),
        with a warning."""
        here = self._file_id(fd)
        out = [(".", 3, here), ("..", 3, here)]
        skipped = 0
        with contextlib.closing(self._entries(fd)) as entries:
            for name, kind, ino in entries:
                if len(out) >= MAX_LISTING + 2:
                    break
                if _is_text(name):
                    out.append((name, kind, ino))
                else:
                    skipped += 1
        if skipped:
            log.warning("host folder: %d file names that are not UTF-8 are not listed to the "
                        "page's module", skipped)
        return out

    # -- calls the same on every OS ------------------------------------------------------------

    def _close(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._handle(head)
        if head["h"] == 0:
            raise WasiFail(BADF)
        del self._handles[head["h"]]
        self._close_fd(handle.fd)
        self._budget.give()
        return {}, b""

    def _read(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._handle(head)
        if handle.is_dir:
            raise WasiFail(ISDIR)
        size = max(0, min(int(head["len"]), MAX_IO))
        at = head.get("at")
        return {}, self._read_at(handle.fd, size, None if at is None else int(at))

    def _write(self, head: dict[str, Any], data: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._writable_file(head)
        if len(data) > MAX_IO:
            raise WasiFail(INVAL)
        at = head.get("at")
        n = self._write_at(handle.fd, data, None if at is None else int(at),
                           bool(head.get("append")))
        return {"n": n}, b""

    def _seek(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._handle(head)
        if handle.is_dir:
            raise WasiFail(BADF)
        whence = int(head["whence"])
        offset = int(head["offset"])
        if whence not in (0, 1, 2) or (whence == 0 and offset < 0):
            raise WasiFail(INVAL)
        return {"pos": str(self._seek_to(handle.fd, offset, whence))}, b""

    def _stat(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        return self._fstat(self._handle(head).fd), b""

    def _readdir(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._folder(head)
        cookie = int(head["cookie"])
        if cookie == 0 or handle.listing is None:
            handle.listing = self._list(handle.fd)
        out: list[list[Any]] = []
        size = 0
        for name, kind, ino in handle.listing[cookie:cookie + int(head.get("count", 256))]:
            size += len(name.encode()) * 6 + 32  # JSON-escaped at worst
            if out and size > MAX_JSON // 2:
                break  # the guest asks again from the next cookie
            out.append([name, kind, str(ino)])
        return {"entries": out}, b""

    def _truncate(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._writable_file(head)
        size = int(head["size"])
        if size < 0:
            raise WasiFail(INVAL)
        if head.get("grow") and size <= self._size(handle.fd):
            return {}, b""
        self._set_size(handle.fd, size)
        return {}, b""

    def _sync(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._handle(head)
        if not handle.is_dir:
            self._flush(handle)
        return {}, b""

    # -- path calls: each OS's own --------------------------------------------------------------

    def _path_call(self, head: dict[str, Any], data: bytes) -> tuple[dict[str, Any], bytes]:
        raise NotImplementedError

    _open = _pstat = _mkdir = _rmdir = _unlink = _rename = _link = _symlink = _readlink = \
        _times = _path_call


def lend(root: Root, mode: Literal["ro", "rw"], budget: HandleBudget) -> HostFolder:
    """The host folder answering calls beneath `root` on this OS."""
    if os.name == "nt":  # pragma: no cover - Windows (tests/test_windows_pytest.py)
        from .hostfs_win import WinHostFolder

        return WinHostFolder(root, mode, budget)
    from .hostfs_posix import PosixHostFolder

    return PosixHostFolder(root, mode, budget)


def _is_text(name: str) -> bool:
    """False for a name os.scandir decoded with surrogateescape (bytes that are not UTF-8)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True

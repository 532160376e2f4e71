"""A host folder lent to a page-supplied module: its WASI file calls, run beneath a `Root`.

A page-supplied module runs in the page's browser engine (never natively); when the page gives it
a folder of the machine (a `requestDirectory()` grant or a `[page] preopens` entry), the engine
has the page relay each file call on that folder to the bridge (an FS_CALL record on its
WebSocket, runtime/bridge/mounts.py), which answers it here. The rules are those of native
services: every path is opened beneath the folder with `hostpath.Root` (openat2
RESOLVE_BENEATH: `..`, absolute paths and symlinks that lead out fail with EPERM, also for a
link swapped in between two calls), a
read-only folder refuses every change (EPERM), only regular files and folders are opened, and
each call moves at most `MAX_IO` bytes. Open files and folders are handles in a table bounded per
folder (`MAX_HANDLES`) and per page (`HandleBudget`); `close()` releases them all (the worker
ended or its page left).

Wire format of one call, both ways: `u32 LE length + JSON object + bytes` (`encode`/`decode`);
an answer's JSON stays under MAX_JSON (folder listings come in parts) and its bytes under MAX_IO.
The bridge relays calls as FS_CALL records (runtime/bridge/mounts.py).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import struct
import threading
from collections.abc import Callable
from typing import Any, Literal

from ..host.hostpath import EscapeError, Root, fd_path
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
_O_PATH = getattr(os, "O_PATH", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

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
_FILETYPE = {stat.S_IFDIR: 3, stat.S_IFREG: 4, stat.S_IFLNK: 7, stat.S_IFCHR: 2,
             stat.S_IFBLK: 1, stat.S_IFSOCK: 6}


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
        self.fd = fd
        self.is_dir = is_dir
        self.writable = writable
        self.listing: list[tuple[str, int, int]] | None = None


class HostFolder:
    """One mounted folder: handle 0 is the folder itself. Calls are serialized (`call`)."""

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

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _take_root(root: Root) -> int:
        """The root's descriptor, taken from it."""
        assert root.fd is not None, "host folders need a POSIX root"
        fd, root.fd = root.fd, None
        return fd

    @staticmethod
    def _close_fd(fd: int) -> None:
        os.close(fd)

    @staticmethod
    def _list(fd: int) -> list[tuple[str, int, int]]:
        return _listing(fd)

    def _handle(self, head: dict[str, Any], key: str = "h") -> _Handle:
        h = head[key]
        if not isinstance(h, int) or h not in self._handles:
            raise WasiFail(BADF)
        return self._handles[h]

    def _dir(self, head: dict[str, Any], key: str = "h") -> Root:
        handle = self._handle(head, key)
        if not handle.is_dir:
            raise WasiFail(NOTDIR)
        return Root(handle.fd, fd_path(handle.fd) or "")  # borrowed: never closed through it

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
    def _open_beneath(root: Root, path: str, flags: int, mode: int = 0) -> int:
        return root.open_fd(path, flags, mode)

    def _parent(self, head: dict[str, Any], key: str = "h", path_key: str = "path"
                ) -> tuple[int, str]:
        """(an O_PATH fd of the parent folder, opened beneath, and the last name) of a path."""
        path = self._path(head, path_key)
        trimmed = path.rstrip("/")
        if trimmed == "":
            raise WasiFail(PERM)
        parent, _, name = trimmed.rpartition("/")
        root = self._dir(head, key)
        if name in (".", ".."):
            fd = self._open_beneath(root, trimmed, _O_PATH | _O_DIRECTORY)  # escape -> EPERM
            os.close(fd)
            raise WasiFail(BUSY)
        fd = self._open_beneath(root, parent or ".", _O_PATH | _O_DIRECTORY)
        return fd, name

    def _new_handle(self, fd: int, is_dir: bool, writable: bool) -> int:
        if len(self._handles) > MAX_HANDLES or not self._budget.take():
            self._close_fd(fd)
            raise WasiFail(MFILE)
        h = self._next
        self._next += 1
        self._handles[h] = _Handle(fd, is_dir, writable)
        return h

    # -- calls ----------------------------------------------------------------------------------

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

    def _open(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        root = self._dir(head)
        path, read, write, creat, excl, trunc = self._open_request(head)
        flags = _O_NONBLOCK | (os.O_RDWR if write and read else os.O_WRONLY if write
                               else os.O_RDONLY)
        if not head.get("follow"):
            flags |= _O_NOFOLLOW
        if head.get("directory"):
            flags |= _O_DIRECTORY
        if trunc:
            flags |= os.O_TRUNC
        if creat:
            flags |= os.O_CREAT | (os.O_EXCL if excl else 0)
            if self.mode != "rw":  # creating is a change: only an existing file may open
                try:
                    fd = self._open_beneath(root, path, flags & ~(os.O_CREAT | os.O_EXCL))
                except FileNotFoundError:
                    raise WasiFail(PERM) from None
                if excl:
                    os.close(fd)
                    raise WasiFail(EXIST)
                return self._opened(fd, write)
        try:
            fd = self._open_beneath(root, path, flags, 0o644 if creat else 0)
        except IsADirectoryError:
            raise WasiFail(ISDIR) from None
        return self._opened(fd, write)

    def _opened(self, fd: int, write: bool) -> tuple[dict[str, Any], bytes]:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind not in (stat.S_IFREG, stat.S_IFDIR):  # FIFOs, devices, sockets: never
            os.close(fd)
            raise WasiFail(ACCES)
        if kind == stat.S_IFREG and _O_NONBLOCK:
            os.set_blocking(fd, True)
        is_dir = kind == stat.S_IFDIR
        h = self._new_handle(fd, is_dir, write or (is_dir and self.mode == "rw"))
        return {"h": h, "type": _FILETYPE[kind]}, b""

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
        data = os.pread(handle.fd, size, int(at)) if at is not None else os.read(handle.fd, size)
        return {}, data

    def _write(self, head: dict[str, Any], data: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._writable_file(head)
        if len(data) > MAX_IO:
            raise WasiFail(INVAL)
        at = head.get("at")
        if head.get("append"):  # an O_APPEND descriptor writes at the end, pwrite too
            os.lseek(handle.fd, 0, os.SEEK_END)
            at = None
        n = os.pwrite(handle.fd, data, int(at)) if at is not None else os.write(handle.fd, data)
        return {"n": n}, b""

    def _seek(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._handle(head)
        if handle.is_dir:
            raise WasiFail(BADF)
        whence = int(head["whence"])
        if whence not in (0, 1, 2):
            raise WasiFail(INVAL)
        return {"pos": str(os.lseek(handle.fd, int(head["offset"]), whence))}, b""

    def _stat(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        return _filestat(os.fstat(self._handle(head).fd)), b""

    def _pstat(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        root = self._dir(head)
        flags = _O_PATH | (0 if head.get("follow") else _O_NOFOLLOW)
        fd = self._open_beneath(root, self._path(head), flags)
        try:
            return _filestat(os.fstat(fd)), b""
        finally:
            os.close(fd)

    def _readdir(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._handle(head)
        if not handle.is_dir:
            raise WasiFail(NOTDIR)
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

    def _mkdir(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        try:
            parent, name = self._parent(head)
        except WasiFail as e:
            raise WasiFail(EXIST if e.code == BUSY else e.code) from None
        try:
            self._writable()
            os.mkdir(name, 0o755, dir_fd=parent)
        finally:
            os.close(parent)
        return {}, b""

    def _rmdir(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        parent, name = self._parent(head)
        try:
            if stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                self._writable()
            os.rmdir(name, dir_fd=parent)
        finally:
            os.close(parent)
        return {}, b""

    def _unlink(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        if self._path(head).endswith("/"):
            raise WasiFail(NOTDIR)
        try:
            parent, name = self._parent(head)
        except WasiFail as e:
            raise WasiFail(ISDIR if e.code == BUSY else e.code) from None
        try:
            if stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                raise WasiFail(ISDIR)
            self._writable()
            os.unlink(name, dir_fd=parent)
        finally:
            os.close(parent)
        return {}, b""

    def _parents(self, head: dict[str, Any]) -> tuple[int, str, int, str]:
        """The parent folders and last names of `path` (beneath `h`) and `path2` (beneath `h2`)."""
        src, name = self._parent(head)
        try:
            dst, new = self._parent(head, "h2", "path2")
        except BaseException:
            os.close(src)
            raise
        return src, name, dst, new

    def _rename(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        src, name, dst, new = self._parents(head)
        try:
            os.stat(name, dir_fd=src, follow_symlinks=False)  # NOENT before PERM, as natively
            self._writable()
            os.rename(name, new, src_dir_fd=src, dst_dir_fd=dst)
        finally:
            os.close(src)
            os.close(dst)
        return {}, b""

    def _link(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        src, name, dst, new = self._parents(head)
        try:
            if stat.S_ISDIR(os.stat(name, dir_fd=src, follow_symlinks=False).st_mode):
                raise WasiFail(PERM)
            self._writable()
            os.link(name, new, src_dir_fd=src, dst_dir_fd=dst, follow_symlinks=False)
        finally:
            os.close(src)
            os.close(dst)
        return {}, b""

    def _symlink(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        target = head["target"]
        if not isinstance(target, str) or "\0" in target:
            raise WasiFail(INVAL)
        if self._path(head).endswith("/"):
            raise WasiFail(NOENT)
        parent, name = self._parent(head)
        try:
            if target.startswith("/"):
                raise WasiFail(PERM)
            self._writable()
            os.symlink(target, name, dir_fd=parent)
        finally:
            os.close(parent)
        return {}, b""

    def _readlink(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        try:
            parent, name = self._parent(head)
        except WasiFail as e:
            raise WasiFail(INVAL if e.code == BUSY else e.code) from None
        try:
            return {}, os.fsencode(os.readlink(name, dir_fd=parent))
        finally:
            os.close(parent)

    def _truncate(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._writable_file(head)
        size = int(head["size"])
        if head.get("grow") and size <= os.fstat(handle.fd).st_size:
            return {}, b""
        os.ftruncate(handle.fd, size)
        return {}, b""

    def _times(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        if "path" in head:
            root = self._dir(head)
            flags = _O_PATH | (0 if head.get("follow") else _O_NOFOLLOW)
            fd = self._open_beneath(root, self._path(head), flags)
        else:
            fd = os.dup(self._handle(head).fd)
        try:
            self._writable()
            st = os.fstat(fd)
            now = None
            atim, mtim = st.st_atime_ns, st.st_mtime_ns
            if head.get("atim") is not None:
                atim = int(head["atim"])
            if head.get("mtim") is not None:
                mtim = int(head["mtim"])
            if head.get("atimNow") or head.get("mtimNow"):
                import time

                now = time.time_ns()
                atim = now if head.get("atimNow") else atim
                mtim = now if head.get("mtimNow") else mtim
            # Linux O_PATH fds take no futimens: /proc/self/fd/N is the very file opened
            os.utime(f"/proc/self/fd/{fd}" if _O_PATH and "path" in head else fd,
                     ns=(atim, mtim))
        finally:
            os.close(fd)
        return {}, b""

    def _sync(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._handle(head)
        if not handle.is_dir:
            os.fsync(handle.fd)
        return {}, b""


def lend(root: Root, mode: Literal["ro", "rw"], budget: HandleBudget) -> HostFolder:
    """The host folder answering calls beneath `root` on this OS (hostfs_win.py on Windows)."""
    if os.name == "nt":  # pragma: no cover - Windows (tests/test_windows_pytest.py)
        from .hostfs_win import WinHostFolder

        return WinHostFolder(root, mode, budget)
    return HostFolder(root, mode, budget)


def _filestat(st: os.stat_result) -> dict[str, Any]:
    return {
        "dev": str(st.st_dev), "ino": str(st.st_ino),
        "type": _FILETYPE.get(stat.S_IFMT(st.st_mode), 0), "nlink": str(st.st_nlink),
        "size": str(st.st_size), "atim": str(st.st_atime_ns), "mtim": str(st.st_mtime_ns),
        "ctim": str(st.st_ctime_ns),
    }


def _listing(fd: int) -> list[tuple[str, int, int]]:
    """`.`, `..` and up to MAX_LISTING names of folder `fd`: (name, WASI filetype, inode).
    Names that are not UTF-8 are left out (the page's engine and its JSON carry text), with a
    warning naming the folder."""
    here = os.fstat(fd)
    out = [(".", 3, here.st_ino), ("..", 3, here.st_ino)]
    skipped = 0
    with os.scandir(fd) as it:
        for entry in it:
            if len(out) >= MAX_LISTING + 2:
                break
            if not _is_text(entry.name):
                skipped += 1
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            out.append((entry.name, _FILETYPE.get(stat.S_IFMT(st.st_mode), 0), st.st_ino))
    if skipped:
        log.warning("host folder %s: %d file names that are not UTF-8 are not listed to the "
                    "page's module", fd_path(fd) or "?", skipped)
    return out


def _is_text(name: str) -> bool:
    """False for a name os.scandir decoded with surrogateescape (bytes that are not UTF-8)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True

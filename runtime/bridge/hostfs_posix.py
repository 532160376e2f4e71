"""hostfs.py's host folder on Linux and macOS: its calls as POSIX system calls on descriptors.

Every path is opened beneath the call's folder descriptor with `hostpath.Root` (openat2
RESOLVE_BENEATH on Linux: `..`, absolute paths and symlinks that lead out fail with EPERM, also
for a link swapped in between two calls); only regular files and folders are opened.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Any

from ..host.hostpath import Root, fd_path
from .hostfs import (
    ACCES,
    BUSY,
    EXIST,
    INVAL,
    ISDIR,
    NOENT,
    NOTDIR,
    PERM,
    HostFolder,
    WasiFail,
    _Handle,
)

_O_PATH = getattr(os, "O_PATH", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_FILETYPE = {stat.S_IFDIR: 3, stat.S_IFREG: 4, stat.S_IFLNK: 7, stat.S_IFCHR: 2,
             stat.S_IFBLK: 1, stat.S_IFSOCK: 6}


class PosixHostFolder(HostFolder):
    """One mounted folder on Linux or macOS; handle 0 is the folder's descriptor."""

    # -- the system's side ----------------------------------------------------------------------

    @staticmethod
    def _take_root(root: Root) -> int:
        assert root.fd is not None, "host folders need a POSIX root"
        fd, root.fd = root.fd, None
        return fd

    @staticmethod
    def _close_fd(fd: int) -> None:
        os.close(fd)

    def _entries(self, fd: int) -> Iterator[tuple[str, int, int]]:
        with os.scandir(fd) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                yield entry.name, _FILETYPE.get(stat.S_IFMT(st.st_mode), 0), st.st_ino

    def _file_id(self, fd: int) -> int:
        return os.fstat(fd).st_ino

    def _fstat(self, fd: int) -> dict[str, Any]:
        return _filestat(os.fstat(fd))

    def _read_at(self, fd: int, size: int, at: int | None) -> bytes:
        return os.pread(fd, size, at) if at is not None else os.read(fd, size)

    def _write_at(self, fd: int, data: bytes, at: int | None, append: bool) -> int:
        if append:  # an O_APPEND descriptor writes at the end, pwrite too
            os.lseek(fd, 0, os.SEEK_END)
            at = None
        return os.pwrite(fd, data, at) if at is not None else os.write(fd, data)

    def _seek_to(self, fd: int, offset: int, whence: int) -> int:
        return os.lseek(fd, offset, whence)

    def _size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def _set_size(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def _flush(self, handle: _Handle) -> None:
        os.fsync(handle.fd)

    # -- helpers --------------------------------------------------------------------------------

    def _dir(self, head: dict[str, Any], key: str = "h") -> Root:
        fd = self._folder(head, key).fd
        return Root(fd, fd_path(fd) or "")  # borrowed: never closed through it

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
            fd = root.open_fd(trimmed, _O_PATH | _O_DIRECTORY)  # escape -> EPERM
            os.close(fd)
            raise WasiFail(BUSY)
        fd = root.open_fd(parent or ".", _O_PATH | _O_DIRECTORY)
        return fd, name

    def _parents(self, head: dict[str, Any]) -> tuple[int, str, int, str]:
        """The parent folders and last names of `path` (beneath `h`) and `path2` (beneath `h2`)."""
        src, name = self._parent(head)
        try:
            dst, new = self._parent(head, "h2", "path2")
        except BaseException:
            os.close(src)
            raise
        return src, name, dst, new

    # -- path calls -----------------------------------------------------------------------------

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
                    fd = root.open_fd(path, flags & ~(os.O_CREAT | os.O_EXCL))
                except FileNotFoundError:
                    raise WasiFail(PERM) from None
                if excl:
                    os.close(fd)
                    raise WasiFail(EXIST)
                return self._opened(fd, write)
        try:
            fd = root.open_fd(path, flags, 0o644 if creat else 0)
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

    def _pstat(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        root = self._dir(head)
        flags = _O_PATH | (0 if head.get("follow") else _O_NOFOLLOW)
        fd = root.open_fd(self._path(head), flags)
        try:
            return _filestat(os.fstat(fd)), b""
        finally:
            os.close(fd)

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
        target = self._link_target(head)
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

    def _times(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        if "path" in head:
            root = self._dir(head)
            flags = _O_PATH | (0 if head.get("follow") else _O_NOFOLLOW)
            fd = root.open_fd(self._path(head), flags)
        else:
            fd = os.dup(self._handle(head).fd)
        try:
            st = os.fstat(fd)
            atim, mtim = self._times_wanted(head, st.st_atime_ns, st.st_mtime_ns)
            # Linux O_PATH fds take no futimens: /proc/self/fd/N is the very file opened
            os.utime(f"/proc/self/fd/{fd}" if _O_PATH and "path" in head else fd,
                     ns=(atim, mtim))
        finally:
            os.close(fd)
        return {}, b""


def _filestat(st: os.stat_result) -> dict[str, Any]:
    return {
        "dev": str(st.st_dev), "ino": str(st.st_ino),
        "type": _FILETYPE.get(stat.S_IFMT(st.st_mode), 0), "nlink": str(st.st_nlink),
        "size": str(st.st_size), "atim": str(st.st_atime_ns), "mtim": str(st.st_mtime_ns),
        "ctim": str(st.st_ctime_ns),
    }


"""hostfs.py's host folder on Windows: the same calls, answered with handles opened beneath.

The wire, the handle table, its bounds, argument checks and the read-only rules are
hostfs.HostFolder's; the system calls here use Windows handles (runtime/host/winfs.py) instead
of POSIX descriptors (hostfs_posix.py). Every path is opened one name at a time relative to the
folder handle before it, never through a symlink, junction or mount point, and each opened name
is checked on its handle (winfs.Walk). What differs from Linux, by Windows' semantics:

- links are never followed: opening one answers ELOOP (EPERM when following was asked), a
  module cannot make one (symlink: EPERM; Windows reserves that to privileged users) and
  readlink of one answers ENOTSUP;
- names Windows reads as something else (`name:stream`, `CON`, `a.`, `C:`, `\\\\server`, an 8.3
  short name) answer EPERM, like a path leading out;
- names are matched without regard to case, as Windows does;
- a file open elsewhere without delete sharing cannot be removed or renamed (EBUSY or EACCES).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

from ..host import winfs
from ..host.hostpath import EscapeError, Root
from ..host.winpath import split
from .hostfs import BUSY, EXIST, INVAL, ISDIR, NOTDIR, PERM, HostFolder, WasiFail, _Handle

_NOTSUP, _NOENT = 58, 44


class WinHostFolder(HostFolder):
    """One mounted folder on Windows; handle 0 is the folder's own handle."""

    @staticmethod
    def _take_root(root: Root) -> int:
        assert root.handle is not None, "a Windows root holds a folder handle"
        handle, root.handle = root.handle, None
        return handle

    @staticmethod
    def _close_fd(fd: int) -> None:
        winfs.close(fd)

    def _entries(self, fd: int) -> Iterator[tuple[str, int, int]]:
        for name, attrs, ino in winfs.listing(fd):
            yield name, _filetype(attrs), ino

    def _file_id(self, fd: int) -> int:
        return winfs.info(fd).index

    def _fstat(self, fd: int) -> dict[str, Any]:
        return _filestat(winfs.info(fd))

    def _read_at(self, fd: int, size: int, at: int | None) -> bytes:
        return winfs.read(fd, size, at)

    def _write_at(self, fd: int, data: bytes, at: int | None, append: bool) -> int:
        return winfs.write(fd, data, at, append)

    def _seek_to(self, fd: int, offset: int, whence: int) -> int:
        return winfs.seek(fd, offset, whence)

    def _size(self, fd: int) -> int:
        return winfs.info(fd).size

    def _set_size(self, fd: int, size: int) -> None:
        winfs.set_size(fd, size)

    def _flush(self, handle: _Handle) -> None:
        if handle.writable:  # FlushFileBuffers needs write access
            winfs.flush(handle.fd)

    # -- helpers --------------------------------------------------------------------------------

    def _walk(self, head: dict[str, Any], key: str = "h") -> winfs.Walk:
        fd = self._folder(head, key).fd
        return winfs.Walk(fd, winfs.final_path(fd))

    def _entry(self, head: dict[str, Any], access: int, options: int = 0, *, key: str = "h",
               path_key: str = "path", busy: int = BUSY) -> int:
        """A handle of the entry `path` names itself (a link: the link), not the folder."""
        walk = self._walk(head, key)
        path = self._path(head, path_key)
        if not split(path):
            raise WasiFail(busy)
        return walk.open(path, access, winfs.OPEN, options, link_ok=True)

    def _folder_of(self, head: dict[str, Any], key: str, path_key: str) -> tuple[int, str]:
        """(an owned handle of the folder to hold `path`'s last name, that name)."""
        try:
            handle, _, name = self._walk(head, key).parent(self._path(head, path_key))
        except EscapeError as e:
            if e.errno == errno.EBUSY:  # the folder itself
                raise WasiFail(BUSY) from None
            raise
        return handle, name

    # -- path calls -----------------------------------------------------------------------------

    def _open(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        walk = self._walk(head)
        path, read, write, creat, excl, trunc = self._open_request(head)
        access = (winfs.GENERIC_READ if read or not write else 0) | (
            winfs.GENERIC_WRITE if write else 0)
        options = (winfs.DIRECTORY_FILE if head.get("directory")
                   else winfs.NON_DIRECTORY_FILE if write or trunc else 0)
        if creat and self.mode != "rw":  # creating is a change: only an existing file may open
            if excl:
                self._close_fd(self._opened_handle(walk, path, access, winfs.OPEN, options,
                                                   head, missing=PERM))
                raise WasiFail(EXIST)
            creat = False
        disposition = (winfs.CREATE if creat and excl else winfs.OVERWRITE_IF if creat and trunc
                       else winfs.OPEN_IF if creat else winfs.OVERWRITE if trunc else winfs.OPEN)
        handle = self._opened_handle(walk, path, access, disposition, options, head,
                                     missing=PERM if head.get("creat") and self.mode != "rw"
                                     else _NOENT)
        try:
            is_dir = winfs.info(handle).is_dir
        except BaseException:
            self._close_fd(handle)
            raise
        h = self._new_handle(handle, is_dir, write or (is_dir and self.mode == "rw"))
        return {"h": h, "type": 3 if is_dir else 4}, b""

    def _opened_handle(self, walk: winfs.Walk, path: str, access: int, disposition: int,
                       options: int, head: dict[str, Any], missing: int) -> int:
        """Open `path` for the `open` call; a read-write mount's handles may also set times."""
        extra = winfs.WRITE_ATTRIBUTES if self.mode == "rw" else 0
        try:
            try:
                return walk.open(path, access | extra, disposition, options)
            except PermissionError as e:
                if not extra or isinstance(e, EscapeError):
                    raise
                return walk.open(path, access, disposition, options)  # no right to set times
        except FileNotFoundError:
            raise WasiFail(missing) from None
        except IsADirectoryError:
            raise WasiFail(ISDIR) from None
        except OSError as e:
            if e.errno == errno.ELOOP and head.get("follow"):
                raise WasiFail(PERM) from None  # links are never followed here
            raise

    def _pstat(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        walk = self._walk(head)
        handle = walk.open(self._path(head), 0, link_ok=True)
        try:
            st = winfs.info(handle)
            if st.is_link and head.get("follow"):
                raise WasiFail(PERM)  # links are never followed here
            return _filestat(st), b""
        finally:
            self._close_fd(handle)

    def _mkdir(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        try:
            parent, name = self._folder_of(head, "h", "path")
        except WasiFail as e:
            raise WasiFail(EXIST if e.code == BUSY else e.code) from None
        try:
            self._writable()
            self._close_fd(winfs.nt_open(parent, name, winfs.LIST_DIRECTORY, winfs.CREATE,
                                         winfs.DIRECTORY_FILE))
        finally:
            self._close_fd(parent)
        return {}, b""

    def _remove(self, head: dict[str, Any], options: int, busy: int) -> tuple[dict[str, Any],
                                                                             bytes]:
        handle = self._entry(head, winfs.DELETE, options, busy=busy)
        try:
            self._writable()
            winfs.delete(handle)
        finally:
            self._close_fd(handle)
        return {}, b""

    def _rmdir(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        return self._remove(head, winfs.DIRECTORY_FILE, BUSY)

    def _unlink(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        if self._path(head).endswith("/"):
            raise WasiFail(NOTDIR)
        try:
            return self._remove(head, winfs.NON_DIRECTORY_FILE, ISDIR)
        except IsADirectoryError:
            raise WasiFail(ISDIR) from None

    def _move(self, head: dict[str, Any], link: bool) -> tuple[dict[str, Any], bytes]:
        src = self._entry(head, 0 if link else winfs.DELETE)
        try:
            if link and winfs.info(src).is_dir:
                raise WasiFail(PERM)
            dst, name = self._folder_of(head, "h2", "path2")
            try:
                self._writable()
                winfs.rename(src, dst, name, link=link)
            finally:
                self._close_fd(dst)
        finally:
            self._close_fd(src)
        return {}, b""

    def _rename(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        return self._move(head, link=False)

    def _link(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        return self._move(head, link=True)

    def _symlink(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        self._link_target(head)
        parent, _name = self._folder_of(head, "h", "path")
        self._close_fd(parent)
        raise WasiFail(PERM)  # Windows keeps symlinks to privileged users; never made here

    def _readlink(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        handle = self._entry(head, 0, busy=INVAL)
        try:
            raise WasiFail(_NOTSUP if winfs.info(handle).is_link else INVAL)
        finally:
            self._close_fd(handle)

    def _times(self, head: dict[str, Any], _: bytes) -> tuple[dict[str, Any], bytes]:
        if "path" in head:
            handle = self._walk(head).open(self._path(head), winfs.WRITE_ATTRIBUTES)
        else:
            handle = winfs.duplicate(self._handle(head).fd)
        try:
            st = winfs.info(handle)
            atim, mtim = self._times_wanted(head, st.atime_ns, st.mtime_ns)
            winfs.set_times(handle, atim, mtim)
        finally:
            self._close_fd(handle)
        return {}, b""



def _filetype(attrs: int) -> int:
    return 7 if attrs & winfs.ATTR_REPARSE else 3 if attrs & winfs.ATTR_DIRECTORY else 4


def _filestat(st: winfs.FileInfo) -> dict[str, Any]:
    return {
        "dev": str(st.volume), "ino": str(st.index), "type": _filetype(st.attrs),
        "nlink": str(st.links), "size": str(st.size), "atim": str(st.atime_ns),
        "mtim": str(st.mtime_ns), "ctim": str(st.ctime_ns),
    }


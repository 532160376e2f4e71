"""Host paths opened without following links out of a root.

A service with a writable preopen can plant symlinks in it (`exports -> ../../../etc`). Whatever
the host opens later inside such a folder (another service's preopen, a grant, a file of the UI)
is opened *beneath* a `Root`:

- Linux: `openat2(root_fd, rel, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`. A link or `..` that
  leads out fails (EXDEV), and what was checked is what is used: the fd is handed on (to wasmtime
  as `/proc/self/fd/N`), so a link swapped in after the check changes nothing.
- Windows: the root is a folder handle held without delete sharing (it cannot be renamed or
  removed while held); folders beneath it are opened one name at a time relative to the handle
  before, never through a symlink or junction, and checked on the opened handle (winfs.py; names
  Windows reads as something else are refused first, winpath.py). wasmtime then gets the final
  path of the held handle.
- Elsewhere, or on a kernel without openat2: resolve, then verify. The path is opened and the real
  path of what was opened must lie inside the root's real path.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from pathlib import Path

_SYS_OPENAT2 = 437  # the same number on every Linux architecture (since 5.6)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
#: Opening never blocks (a FIFO planted where a file was expected) and never takes a terminal.
FILE_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_PROC_FD = Path("/proc/self/fd")


class EscapeError(PermissionError):
    """A path that leads out of its root (through a symlink or `..`)."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _load_syscall():  # a ctypes function pointer, or None
    if sys.platform != "linux":
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_long
    return fn


_syscall = _load_syscall()
_openat2_works: bool | None = None if _syscall is not None else False


def _openat2(dirfd: int, rel: str, flags: int, mode: int = 0) -> int | None:
    """openat2 beneath `dirfd` (`mode`: of a file O_CREAT makes); None when the kernel (or a
    seccomp filter) lacks it."""
    global _openat2_works
    if _openat2_works is False:
        return None
    how = _OpenHow(flags | os.O_CLOEXEC, mode, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
    assert _syscall is not None
    fd = _syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd),
                  ctypes.c_char_p(os.fsencode(rel)), ctypes.byref(how),
                  ctypes.c_size_t(ctypes.sizeof(how)))
    if fd >= 0:
        _openat2_works = True
        return int(fd)
    err = ctypes.get_errno()
    if _openat2_works is None and err in (errno.ENOSYS, errno.EPERM):
        _openat2_works = False  # not there: fall back to resolve-then-verify from now on
        return None
    if err == errno.EXDEV:
        raise EscapeError(errno.EXDEV, "leads out of its folder (a symlink or ..)", rel)
    raise OSError(err, os.strerror(err), rel)


def openat2_available() -> bool:
    """True when opens beneath a root use openat2 (Linux ≥ 5.6 without a filter against it)."""
    if _openat2_works is None:
        fd = _openat2(-100, ".", _DIR_FLAGS)  # AT_FDCWD
        if fd is not None:
            os.close(fd)
    return bool(_openat2_works)


def fd_path(fd: int) -> str | None:
    """The real path of what `fd` refers to, where the OS can tell."""
    if sys.platform == "linux":
        try:
            return os.readlink(_PROC_FD / str(fd))
        except OSError:
            return None
    if os.name == "nt":  # pragma: no cover - Windows (tests/test_windows_pytest.py)
        import msvcrt

        from . import winfs

        try:
            return winfs.final_path(msvcrt.get_osfhandle(fd))  # type: ignore[attr-defined]
        except OSError:
            return None
    if sys.platform == "darwin":  # pragma: no cover - macOS
        import fcntl

        try:
            raw = fcntl.fcntl(fd, 50, b"\0" * 1024)  # F_GETPATH
        except OSError:
            return None
        return os.fsdecode(raw.split(b"\0", 1)[0])
    return None


def inside(path: str, folder: str) -> bool:
    """True if real path `path` is `folder` or lies inside it (case aside on Windows)."""
    path, folder = os.path.normcase(path), os.path.normcase(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Root:
    """A folder opened once; everything opened through it stays inside it.

    The root itself is opened as given (links in its own path are the developer's or the
    user's, and trusted). Close it (or use `with`) when done; `close()` is idempotent.
    """

    def __init__(self, fd: int | None, real: str, handle: int | None = None) -> None:
        self.fd = fd  # None on Windows: `handle` is the folder's there
        self.real = real
        self.handle = handle

    @classmethod
    def open(cls, path: Path | str) -> Root:
        """Open folder `path` as a root (OSError if it is missing or not a folder)."""
        if os.name == "nt":  # pragma: no cover - Windows (tests/test_windows_pytest.py)
            from . import winfs

            handle = winfs.open_dir(str(path))
            try:
                return cls(None, winfs.final_path(handle), handle)
            except BaseException:
                winfs.close(handle)
                raise
        fd = os.open(path, _DIR_FLAGS)
        return cls(fd, fd_path(fd) or os.path.realpath(path))

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the folder."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)
        handle, self.handle = self.handle, None
        if handle is not None:  # pragma: no cover - Windows
            from . import winfs

            winfs.close(handle)

    def open_fd(self, rel: str, flags: int = FILE_FLAGS, mode: int = 0) -> int:
        """An fd for `rel` (relative, `/`-separated) opened beneath this root (`mode`: of a
        file that O_CREAT makes). On Windows, files are opened for reading only."""
        rel = rel.lstrip("/") or "."
        if self.handle is not None:  # pragma: no cover - Windows (tests/test_windows_pytest.py)
            from . import winfs

            return winfs.read_fd(winfs.Walk(self.handle, self.real), rel, flags)
        assert self.fd is not None, "fd access needs an open root"
        fd = _openat2(self.fd, rel, flags, mode)
        if fd is not None:
            return fd
        fd = os.open(rel, flags | os.O_CLOEXEC, mode, dir_fd=self.fd)  # follows links: verify
        real = fd_path(fd) or os.path.realpath(os.path.join(self.real, rel))
        if not inside(real, self.real):
            os.close(fd)
            raise EscapeError(errno.EXDEV, "leads out of its folder (a symlink or ..)", rel)
        return fd

    def subdir(self, rel: str, *, create: bool = False) -> Root:
        """Folder `rel` beneath this root, as a root of its own; `create` makes missing parts
        (each one inside an already verified parent, never through a link)."""
        if os.name == "nt":  # pragma: no cover - Windows (tests/test_windows_pytest.py)
            from . import winfs

            assert self.handle is not None, "a Windows root holds a folder handle"
            handle, real = winfs.Walk(self.handle, self.real).subfolder(rel, create)
            return Root(None, real, handle)
        parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
        if create:
            for i in range(len(parts)):
                parent = self.open_fd("/".join(parts[:i]), _DIR_FLAGS)
                try:
                    os.mkdir(parts[i], 0o755, dir_fd=parent)
                except FileExistsError:
                    pass
                finally:
                    os.close(parent)
        fd = self.open_fd("/".join(parts), _DIR_FLAGS)
        return Root(fd, fd_path(fd) or os.path.join(self.real, *parts))

    def relative(self, fd: int) -> str | None:
        """Where `fd` lies inside this root (`a/b.txt`), or None if the OS cannot tell."""
        real = fd_path(fd)
        if real is None or not inside(real, self.real):
            return None
        return real[len(self.real):].lstrip(os.sep)

    def wasi_path(self) -> str:
        """The path to give wasmtime: `/proc/self/fd/N` (exactly this folder, whatever happens
        to its path later) where it exists, else the verified real path. Valid while open."""
        if self.fd is not None and sys.platform == "linux" and _PROC_FD.is_dir():
            return str(_PROC_FD / str(self.fd))
        return self.real


def is_regular(fd: int) -> bool:
    """True if `fd` is a regular file."""
    return stat.S_ISREG(os.fstat(fd).st_mode)

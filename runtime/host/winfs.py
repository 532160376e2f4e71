"""Windows files opened beneath a folder handle, never through a link (ctypes; Windows only).

`open_beneath` opens a path one name at a time, each with `NtCreateFile` relative to the handle
of the folder before it (`RootDirectory`) and `FILE_OPEN_REPARSE_POINT`, so no symlink, junction
or mount point is ever followed, and what was checked is the handle that is used. Every opened
name is then checked on its handle: a reparse point is refused (`ELOOP`, or `EPERM` where the
caller asked to follow it), and the handle's final path (`GetFinalPathNameByHandleW`) must lie
inside the root's and end in the name asked for (case aside), so an 8.3 short name aliasing a
longer one, or a link the OS followed without saying so (Wine follows Unix symlinks), is refused.
Names are first checked as text (winpath.py). Errors are OSError with a POSIX errno.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Iterator
from ctypes import wintypes
from dataclasses import dataclass

from .hostpath import EscapeError
from .winpath import split

# access rights, sharing, dispositions and options of NtCreateFile
READ_ATTRIBUTES, WRITE_ATTRIBUTES, DELETE, SYNCHRONIZE = 0x80, 0x100, 0x10000, 0x100000
GENERIC_READ, GENERIC_WRITE = 0x120089, 0x120116  # FILE_GENERIC_READ / FILE_GENERIC_WRITE
LIST_DIRECTORY, TRAVERSE = 0x1, 0x20
SHARE_ALL, SHARE_NO_DELETE = 0x7, 0x3
OPEN, CREATE, OPEN_IF, OVERWRITE, OVERWRITE_IF = 1, 2, 3, 4, 5
DIRECTORY_FILE, NON_DIRECTORY_FILE = 0x1, 0x40
_SYNC_IO, _OPEN_REPARSE, _BACKUP = 0x20, 0x200000, 0x4000
_OBJ_CASE_INSENSITIVE = 0x40
ATTR_READONLY, ATTR_DIRECTORY, ATTR_REPARSE = 0x1, 0x10, 0x400
_EPOCH = 116444736000000000  # 1970-01-01 in 100 ns steps since 1601

# NTSTATUS -> errno where the DOS error would say less than WASI needs
_STATUS = {
    0xC0000034: errno.ENOENT, 0xC000003A: errno.ENOENT, 0xC0000033: errno.ENOENT,
    0xC0000056: errno.ENOENT, 0xC0000035: errno.EEXIST, 0xC00000BA: errno.EISDIR,
    0xC0000103: errno.ENOTDIR, 0xC0000101: errno.ENOTEMPTY, 0xC0000022: errno.EACCES,
    0xC0000121: errno.EACCES, 0xC0000043: errno.EBUSY, 0xC00000D4: errno.EXDEV,
    0xC000007F: errno.ENOSPC, 0xC00000BB: errno.EOPNOTSUPP, 0xC000000D: errno.EINVAL,
    0xC0000003: errno.EINVAL, 0xC0000024: errno.EINVAL, 0xC0000904: errno.EFBIG,
    0xC0000106: errno.ENAMETOOLONG, 0xC000026E: errno.ENAMETOOLONG, 0x80000011: errno.EBUSY,
}


class _Unicode(ctypes.Structure):
    _fields_ = [("Length", ctypes.c_ushort), ("MaximumLength", ctypes.c_ushort),
                ("Buffer", ctypes.c_wchar_p)]


class _ObjectAttributes(ctypes.Structure):
    _fields_ = [("Length", ctypes.c_ulong), ("RootDirectory", ctypes.c_void_p),
                ("ObjectName", ctypes.POINTER(_Unicode)), ("Attributes", ctypes.c_ulong),
                ("SecurityDescriptor", ctypes.c_void_p), ("SecurityQos", ctypes.c_void_p)]


class _IoStatus(ctypes.Structure):
    _fields_ = [("Status", ctypes.c_void_p), ("Information", ctypes.c_void_p)]


class _HandleInfo(ctypes.Structure):  # BY_HANDLE_FILE_INFORMATION
    _fields_ = [("attrs", wintypes.DWORD), ("ctime", ctypes.c_uint64),
                ("atime", ctypes.c_uint64), ("mtime", ctypes.c_uint64),
                ("volume", wintypes.DWORD), ("size_hi", wintypes.DWORD),
                ("size_lo", wintypes.DWORD), ("links", wintypes.DWORD),
                ("index_hi", wintypes.DWORD), ("index_lo", wintypes.DWORD)]
    _pack_ = 4


class _Overlapped(ctypes.Structure):
    _fields_ = [("Internal", ctypes.c_void_p), ("InternalHigh", ctypes.c_void_p),
                ("Offset", wintypes.DWORD), ("OffsetHigh", wintypes.DWORD),
                ("hEvent", ctypes.c_void_p)]


class _Api:
    """kernel32 and ntdll, loaded on first use (this module imports on any OS)."""

    def __init__(self) -> None:
        k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        nt = ctypes.WinDLL("ntdll")  # type: ignore[attr-defined]
        h, p, dw, b = ctypes.c_void_p, ctypes.c_void_p, wintypes.DWORD, wintypes.BOOL
        self.NtCreateFile = _fn(nt.NtCreateFile, ctypes.c_long, ctypes.POINTER(h), dw,
                                ctypes.POINTER(_ObjectAttributes), ctypes.POINTER(_IoStatus),
                                p, dw, dw, dw, dw, p, dw)
        self.NtSetInformationFile = _fn(nt.NtSetInformationFile, ctypes.c_long, h,
                                        ctypes.POINTER(_IoStatus), p, dw, dw)
        self.RtlNtStatusToDosError = _fn(nt.RtlNtStatusToDosError, dw, ctypes.c_long)
        self.CreateFileW = _fn(k32.CreateFileW, h, wintypes.LPCWSTR, dw, dw, p, dw, dw, h)
        self.CloseHandle = _fn(k32.CloseHandle, b, h)
        self.GetFinalPathNameByHandleW = _fn(k32.GetFinalPathNameByHandleW, dw, h,
                                             wintypes.LPWSTR, dw, dw)
        self.GetFileInformationByHandle = _fn(k32.GetFileInformationByHandle, b, h,
                                              ctypes.POINTER(_HandleInfo))
        self.GetFileInformationByHandleEx = _fn(k32.GetFileInformationByHandleEx, b, h,
                                                ctypes.c_int, p, dw)
        self.ReadFile = _fn(k32.ReadFile, b, h, p, dw, ctypes.POINTER(dw),
                            ctypes.POINTER(_Overlapped))
        self.WriteFile = _fn(k32.WriteFile, b, h, p, dw, ctypes.POINTER(dw),
                             ctypes.POINTER(_Overlapped))
        self.SetFilePointerEx = _fn(k32.SetFilePointerEx, b, h, ctypes.c_int64,
                                    ctypes.POINTER(ctypes.c_int64), dw)
        self.SetFileTime = _fn(k32.SetFileTime, b, h, p, p, p)
        self.FlushFileBuffers = _fn(k32.FlushFileBuffers, b, h)
        self.GetCurrentProcess = _fn(k32.GetCurrentProcess, h)
        self.DuplicateHandle = _fn(k32.DuplicateHandle, b, h, h, h, ctypes.POINTER(h), dw, b,
                                   dw)


def _fn(f, restype, *argtypes):  # type: ignore[no-untyped-def]
    f.restype, f.argtypes = restype, list(argtypes)
    return f


_api: _Api | None = None


def api() -> _Api:
    global _api
    if _api is None:
        _api = _Api()
    return _api


def _status_error(status: int, what: str) -> OSError:
    status &= 0xFFFFFFFF
    code = _STATUS.get(status)
    if code is None:
        win = api().RtlNtStatusToDosError(status)
        return OSError(0, ctypes.FormatError(win), what, win)  # type: ignore[attr-defined]
    return OSError(code, os.strerror(code), what)


def _last_error(what: str) -> OSError:
    win = ctypes.get_last_error()  # type: ignore[attr-defined]
    if win == 267:  # ERROR_DIRECTORY
        return OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), what)
    return OSError(0, ctypes.FormatError(win), what, win)  # type: ignore[attr-defined]


def close(handle: int) -> None:
    api().CloseHandle(handle)


def duplicate(handle: int) -> int:
    """A second handle of what `handle` is open on (same access)."""
    a = api()
    me = a.GetCurrentProcess()
    out = ctypes.c_void_p()
    if not a.DuplicateHandle(me, handle, me, ctypes.byref(out), 0, False, 2):  # SAME_ACCESS
        raise _last_error("DuplicateHandle")
    return int(out.value or 0)


def nt_open(parent: int, name: str, access: int, disposition: int = OPEN, options: int = 0,
            share: int = SHARE_ALL, attrs: int = 0) -> int:
    """NtCreateFile of one `name` relative to folder handle `parent`, never through a reparse
    point (the point itself is opened)."""
    a = api()
    text = _Unicode(len(name) * 2, len(name) * 2, name)
    oa = _ObjectAttributes(ctypes.sizeof(_ObjectAttributes), parent, ctypes.pointer(text),
                           _OBJ_CASE_INSENSITIVE, None, None)
    io = _IoStatus()
    out = ctypes.c_void_p()
    status = a.NtCreateFile(ctypes.byref(out), access | SYNCHRONIZE | READ_ATTRIBUTES,
                            ctypes.byref(oa), ctypes.byref(io), None, attrs or 0x80, share,
                            disposition, options | _SYNC_IO | _OPEN_REPARSE, None, 0)
    if status < 0:
        raise _status_error(status, name)
    return int(out.value or 0)


def open_dir(path: str, share: int = SHARE_NO_DELETE) -> int:
    """A handle of folder `path` (links in the path itself followed: the caller's own), shared
    without delete by default, so it cannot be renamed or removed while held."""
    h = api().CreateFileW(path, LIST_DIRECTORY | TRAVERSE | READ_ATTRIBUTES | SYNCHRONIZE,
                          share, None, 3, 0x02000000, None)  # OPEN_EXISTING, BACKUP_SEMANTICS
    if h is None or h == ctypes.c_void_p(-1).value:
        raise _last_error(path)
    if not info(h).attrs & ATTR_DIRECTORY:
        close(h)
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", path)
    return int(h)


def final_path(handle: int) -> str:
    """The path of what `handle` is open on, as Windows resolved it (`C:\\a\\b`)."""
    buf = ctypes.create_unicode_buffer(32768)
    n = api().GetFinalPathNameByHandleW(handle, buf, 32768, 0)
    if n == 0 or n >= 32768:
        raise _last_error("GetFinalPathNameByHandleW")
    path = buf.value
    if path.startswith("\\\\?\\UNC\\"):
        return "\\\\" + path[8:]
    return path[4:] if path.startswith("\\\\?\\") else path


def inside(path: str, folder: str) -> bool:
    """True if Windows path `path` is `folder` or lies inside it (case aside)."""
    p, f = os.path.normcase(path), os.path.normcase(folder).rstrip("\\/")
    return p == f or p.startswith(f + "\\")


@dataclass
class FileInfo:
    attrs: int
    volume: int
    index: int
    links: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int

    @property
    def is_dir(self) -> bool:
        return bool(self.attrs & ATTR_DIRECTORY)

    @property
    def is_link(self) -> bool:
        return bool(self.attrs & ATTR_REPARSE)


def _ns(filetime: int) -> int:
    return (filetime - _EPOCH) * 100


def info(handle: int) -> FileInfo:
    """What GetFileInformationByHandle tells of `handle`."""
    raw = _HandleInfo()
    if not api().GetFileInformationByHandle(handle, ctypes.byref(raw)):
        raise _last_error("GetFileInformationByHandle")
    return FileInfo(raw.attrs, raw.volume, (raw.index_hi << 32) | raw.index_lo, raw.links,
                    (raw.size_hi << 32) | raw.size_lo, _ns(raw.atime), _ns(raw.mtime),
                    _ns(raw.mtime))


class Walk:
    """Opening paths beneath root folder handle `root` whose final path is `real`."""

    def __init__(self, root: int, real: str) -> None:
        self.root = root
        self.real = real

    def _check(self, handle: int, name: str, parent_real: str) -> str:
        """The final path of `handle`, just opened as `name` in `parent_real`; EscapeError when
        it is not that name there (a short-name alias, a link followed)."""
        try:
            real = final_path(handle)
        except OSError:  # its path went away while it was opened (seen under Wine)
            raise OSError(errno.ENOENT, "moved or removed while being opened", name) from None
        expected = os.path.join(parent_real, name)
        if os.path.normcase(real) != os.path.normcase(expected) or not inside(real, self.real):
            raise EscapeError(errno.EXDEV, f"{name} is {real}, not {expected} (a short name or "
                              "a link): refused", name)
        return real

    def parent(self, rel: str) -> tuple[int, str, str]:
        """(an owned handle of the folder holding the last name of `rel`, that folder's final
        path, the last name); EscapeError when `rel` names the root itself or leads out."""
        names = split(rel)
        if not names:
            raise EscapeError(errno.EBUSY, "the folder itself", rel)
        handle, real = self._folder(names[:-1])
        return handle, real, names[-1]

    def _folder(self, names: list[str], create: bool = False) -> tuple[int, str]:
        """An owned handle and final path of folder `names` beneath the root (`create`: made
        where missing, inside an already checked parent)."""
        current, real = duplicate(self.root), self.real
        try:
            for name in names:
                nxt = nt_open(current, name, LIST_DIRECTORY | TRAVERSE,
                              OPEN_IF if create else OPEN, DIRECTORY_FILE, SHARE_NO_DELETE)
                close(current)
                current = nxt
                if info(current).is_link:
                    raise EscapeError(errno.ELOOP, f"{name} is a link: not followed", name)
                real = self._check(current, name, real)
        except BaseException:
            close(current)
            raise
        return current, real

    def open(self, rel: str, access: int, disposition: int = OPEN, options: int = 0,
             *, link_ok: bool = False, share: int = SHARE_ALL) -> int:
        """An owned handle of `rel` beneath the root. A link as the last name: opened itself
        with `link_ok`, else ELOOP."""
        names = split(rel)
        if not names:
            return duplicate(self.root)
        parent, real = self._folder(names[:-1])
        try:
            handle = nt_open(parent, names[-1], access, disposition, options, share)
        finally:
            close(parent)
        try:
            if info(handle).is_link:
                if not link_ok:
                    raise OSError(errno.ELOOP, "a link (links are not followed)", rel)
            else:
                self._check(handle, names[-1], real)
        except BaseException:
            close(handle)
            raise
        return handle

    def subfolder(self, rel: str, create: bool = False) -> tuple[int, str]:
        """An owned handle and final path of folder `rel` (made where missing with `create`)."""
        return self._folder(split(rel), create)


def read(handle: int, size: int, at: int | None) -> bytes:
    """Up to `size` bytes from the position, or from offset `at` (the position kept)."""
    a = api()
    buf = ctypes.create_string_buffer(size)
    done = wintypes.DWORD()
    ov = None
    if at is not None:
        pos = seek(handle, 0, 1)
        ov = _Overlapped(None, None, at & 0xFFFFFFFF, at >> 32, None)
    ok = a.ReadFile(handle, buf, size, ctypes.byref(done), ctypes.byref(ov) if ov else None)
    err = 0 if ok else ctypes.get_last_error()  # type: ignore[attr-defined]
    if at is not None:
        seek(handle, pos, 0)
    if not ok and err != 38:  # ERROR_HANDLE_EOF: nothing there
        raise OSError(0, ctypes.FormatError(err), "ReadFile", err)  # type: ignore[attr-defined]
    return buf.raw[:done.value]


def write(handle: int, data: bytes, at: int | None, append: bool = False) -> int:
    """Write `data` at the position, at offset `at` (the position kept), or at the end."""
    a = api()
    done = wintypes.DWORD()
    ov = None
    pos = None
    if append:
        ov = _Overlapped(None, None, 0xFFFFFFFF, 0xFFFFFFFF, None)
    elif at is not None:
        pos = seek(handle, 0, 1)
        ov = _Overlapped(None, None, at & 0xFFFFFFFF, at >> 32, None)
    ok = a.WriteFile(handle, data, len(data), ctypes.byref(done),
                     ctypes.byref(ov) if ov else None)
    if not ok:
        raise _last_error("WriteFile")
    if pos is not None:
        seek(handle, pos, 0)
    return int(done.value)


def seek(handle: int, offset: int, whence: int) -> int:
    out = ctypes.c_int64()
    if not api().SetFilePointerEx(handle, offset, ctypes.byref(out), whence):
        raise _last_error("SetFilePointerEx")
    return int(out.value)


def set_times(handle: int, atime_ns: int, mtime_ns: int) -> None:
    at = ctypes.c_uint64(atime_ns // 100 + _EPOCH)
    mt = ctypes.c_uint64(mtime_ns // 100 + _EPOCH)
    if not api().SetFileTime(handle, None, ctypes.byref(at), ctypes.byref(mt)):
        raise _last_error("SetFileTime")


def flush(handle: int) -> None:
    if not api().FlushFileBuffers(handle):
        raise _last_error("FlushFileBuffers")


def _set_info(handle: int, raw: bytes, cls: int) -> int:
    buf = ctypes.create_string_buffer(raw, len(raw))
    io = _IoStatus()
    return int(api().NtSetInformationFile(handle, ctypes.byref(io), buf, len(raw), cls))


def set_size(handle: int, size: int) -> None:
    status = _set_info(handle, struct.pack("<q", size), 20)  # FileEndOfFileInformation
    if status < 0:
        raise _status_error(status, "truncate")


def delete(handle: int) -> None:
    """Remove what `handle` (opened with DELETE) is open on: at once where the volume has POSIX
    delete semantics (NTFS on Windows 10 1709+), else when its last handle closes."""
    status = _set_info(handle, struct.pack("<I", 0x3), 64)  # FileDispositionInformationEx
    if status < 0 and (status & 0xFFFFFFFF) in (0xC0000002, 0xC0000003, 0xC00000BB,
                                                         0xC000000D):
        status = _set_info(handle, b"\1", 13)  # FileDispositionInformation
    if status < 0:
        raise _status_error(status, "delete")


def rename(handle: int, folder: int, name: str, *, link: bool = False) -> None:
    """Rename what `handle` (opened with DELETE) is open on to `name` in folder handle `folder`
    (replacing a file there), or, with `link`, make `name` a hard link to it."""
    encoded = name.encode("utf-16-le")
    raw = struct.pack("<Q Q I", 1, folder, len(encoded)) + encoded
    status = _set_info(handle, raw.ljust(24, b"\0"), 11 if link else 10)
    if status < 0:
        raise _status_error(status, name)


def listing(handle: int) -> Iterator[tuple[str, int, int]]:
    """(name, attributes, file id) of each entry of folder `handle`, `.` and `..` left out."""
    a = api()
    buf = ctypes.create_string_buffer(64 << 10)
    cls = 11  # FileIdBothDirectoryRestartInfo, then FileIdBothDirectoryInfo
    while True:
        if not a.GetFileInformationByHandleEx(handle, cls, buf, len(buf)):
            if ctypes.get_last_error() == 18:  # type: ignore[attr-defined]  # NO_MORE_FILES
                return
            raise _last_error("GetFileInformationByHandleEx")
        cls = 10
        at = 0
        while True:
            nxt, = struct.unpack_from("<I", buf, at)
            attrs, size = struct.unpack_from("<II", buf, at + 56)
            file_id, = struct.unpack_from("<q", buf, at + 96)
            name = buf.raw[at + 104:at + 104 + size].decode("utf-16-le", "surrogatepass")
            if name not in (".", ".."):
                yield name, attrs, file_id
            if nxt == 0:
                break
            at += nxt


def read_fd(walk: Walk, rel: str, flags: int) -> int:
    """A C runtime descriptor (what `os.read` takes) of file `rel` beneath `walk`'s root, open
    for reading; links are not followed (ELOOP)."""
    import msvcrt

    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
        raise OSError(errno.EINVAL, "only reading is offered beneath a Windows root", rel)
    handle = walk.open(rel, GENERIC_READ)
    try:
        return msvcrt.open_osfhandle(handle, os.O_RDONLY)  # type: ignore[attr-defined]
    except BaseException:
        close(handle)
        raise

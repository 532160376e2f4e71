"""Opening files that a manifest or a command line names: regular files only, bounded reads.

A path in `wvwasi.toml` may point anywhere: at a FIFO (a plain `open()` blocks forever), at
`/dev/zero` (a plain `read()` never ends), at a directory, into a symlink loop, or contain a NUL.
`open_regular()` opens without blocking and refuses anything but a regular file; `read_regular()`
also refuses files larger than a bound. Both raise `FileProblem`, whose `reason` is one short
phrase for an error line ("is a FIFO, not a regular file").
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = {
    stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket",
}


class FileProblem(Exception):
    """A path that is not a readable regular file; `reason` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "file not found"
    if e.errno == errno.ELOOP:
        return "is a symlink loop (too many levels of symbolic links)"
    if e.errno == errno.EACCES:
        return "cannot be read: permission denied"
    if e.errno == errno.ENAMETOOLONG:
        return "has a name that is too long"
    return f"cannot be read: {e.strerror or e}"


def file_type(path: Path | str) -> int | None:
    """`stat.S_IFMT` of what `path` names (links followed), or None when there is nothing
    usable there: missing, a symlink loop, a name too long, a NUL in it, no permission."""
    try:
        return stat.S_IFMT(os.stat(path).st_mode)
    except (OSError, ValueError):
        return None


def open_regular(path: Path | str, *, follow: bool = True) -> BinaryIO:
    """`path` opened for reading; FileProblem unless it is a regular file (nor, unless
    `follow`, a symlink to one). Never blocks."""
    if "\0" in os.fspath(path):
        raise FileProblem("contains a NUL character")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        if os.path.islink(path):  # also where O_NOFOLLOW is missing (Windows)
            raise FileProblem("is a symlink, not a regular file")
        flags |= getattr(os, "O_NOFOLLOW", 0)  # and a link planted since is not followed
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.EISDIR:  # Windows opens no directories
            raise FileProblem("is a directory, not a regular file") from None
        if e.errno == errno.ELOOP and not follow:
            raise FileProblem("is a symlink, not a regular file") from None
        raise FileProblem(_os_reason(e)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise FileProblem(f"is {kind}, not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path | str, limit: int) -> bytes:
    """The bytes of regular file `path`; FileProblem if it is not one or exceeds `limit` bytes."""
    with open_regular(path) as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise FileProblem(_os_reason(e)) from None
    if len(data) > limit:
        raise FileProblem(f"is larger than {limit:,} bytes")
    return data

"""Temporary folders that a later run can tell are abandoned.

A service host keeps its instances' FIFOs and files under one `wvwasi-host-*` folder in the
system temp dir. The folder holds a `.lock` file that the host keeps locked (`flock` on POSIX,
`msvcrt.locking` on Windows) until `close()`; the OS drops the lock when the process dies. So
`sweep()` at the next start removes exactly the folders whose owner is gone (killed, crashed),
never one of a live process.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("wvwasi.host")

PREFIX = "wvwasi-host-"
_NEW = "wvwasi-new-"
_LOCK = ".lock"


class LockedTempDir:
    """A fresh `PREFIX*` folder, locked until `close()` removes it."""

    def __init__(self) -> None:
        # Locked under a name sweep() ignores, then renamed: a sweep never sees it unlocked.
        new = Path(tempfile.mkdtemp(prefix=_NEW))
        self._fd: int | None = os.open(new / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(self._fd):  # pragma: no cover - a brand-new file is never locked
            raise OSError(f"cannot lock {new / _LOCK}")
        self.path = new.with_name(PREFIX + new.name.removeprefix(_NEW))
        os.rename(new, self.path)

    def close(self) -> None:
        """Remove the folder and everything in it (idempotent)."""
        if self._fd is None:
            return
        os.close(self._fd)  # releases the lock (Windows cannot delete an open file)
        self._fd = None
        shutil.rmtree(self.path, ignore_errors=True)


def sweep(temp_dir: Path | None = None) -> list[Path]:
    """Remove abandoned `PREFIX*` folders (their lock is free); returns what was removed."""
    removed = []
    for folder in Path(temp_dir or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            fd = os.open(folder / _LOCK, os.O_RDWR)
        except OSError:
            continue  # not ours, or being created right now (lock file not there yet)
        try:
            if not _try_lock(fd):
                continue  # its host is alive
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d temp folder(s) left by an earlier run", len(removed))
    return removed


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on `fd` without waiting; False if another process holds it."""
    if sys.platform == "win32":  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


"""Temporary folders that a later run can tell are abandoned.

Every temp folder wvwasi makes in the system temp dir (a service host's, holding its instances'
FIFOs and files, and an app's `$TEMP`) is `wvwasi-<tag>-XXXX` with a lock file beside it,
`wvwasi-<tag>-XXXX.lock`, that its owner keeps locked (`flock` on POSIX, `msvcrt.locking` on
Windows) until `close()`; the OS drops the lock when the process dies. `sweep()` at the next
start removes exactly the folders whose lock is free (a killed or crashed run's), never one of a
live process. The lock file is made and locked before its folder exists (Windows cannot rename
an open file), so a sweep never removes a folder in use; a folder without a lock file is never
touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("wvwasi.host")

PREFIX = "wvwasi-"
LOCK_SUFFIX = ".lock"


class LockedTempDir:
    """A fresh `wvwasi-<tag>-*` folder in the system temp dir, locked until `close()`."""

    def __init__(self, tag: str) -> None:
        while True:  # the lock file first, locked, then the folder named after it
            fd, lock = tempfile.mkstemp(prefix=f"{PREFIX}{tag}-", suffix=LOCK_SUFFIX)
            self.lock_path = Path(lock)
            self.path = self.lock_path.with_name(_folder_of(self.lock_path))
            try:  # a sweep that took the new file's lock first, or a folder of that name
                if _try_lock(fd):
                    self.path.mkdir(mode=0o700)
                    break
            except FileExistsError:
                pass
            os.close(fd)
            with contextlib.suppress(OSError):
                self.lock_path.unlink(missing_ok=True)
        self._fd: int | None = fd

    def close(self) -> None:
        """Remove the folder, everything in it and its lock file (idempotent)."""
        if self._fd is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._fd)  # releases the lock (Windows cannot delete an open file)
        self._fd = None
        self.lock_path.unlink(missing_ok=True)


def sweep(temp_dir: Path | None = None) -> list[Path]:
    """Remove abandoned wvwasi temp folders (their lock is free); returns what was removed."""
    removed = []
    for lock in Path(temp_dir or tempfile.gettempdir()).glob(f"{PREFIX}*{LOCK_SUFFIX}"):
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue  # removed meanwhile
        try:
            if not _try_lock(fd):
                continue  # its owner is alive
            folder = lock.with_name(_folder_of(lock))
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):  # Windows: its new owner opened it meanwhile
            lock.unlink(missing_ok=True)
    if removed:
        log.info("removed %d temp folder(s) left by earlier runs", len(removed))
    return removed


def _folder_of(lock: Path) -> str:
    """The name of the folder that `lock` guards."""
    return lock.name.removesuffix(LOCK_SUFFIX)


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

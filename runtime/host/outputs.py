"""Per-spawn output files: files a service writes that are handed back when it exits.

A spawn's `outputs` are guest file paths (`/out/result.wav`). Each one's folder is a fresh,
private, read-write folder of the instance (folders inside another output folder are made in it,
not preopened again). While the instance runs, the host's ticker checks those folders against the
service's `limits.files` (entries) and `limits.files_size` (bytes) and ends the instance with an
"output" error when it writes more; when the guest exits by itself, each output path that holds a
regular file is read back (never following a link the guest planted, never blocking on a FIFO).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .. import guestpath
from .hostpath import FILE_FLAGS, Root, is_regular

#: Seconds between two checks of a running instance's output folders.
CHECK_EVERY = 0.1
#: Output folders one spawn may have preopened (each holds a folder handle while it runs).
MAX_FOLDERS = 16


def folders(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """(every folder of the output `paths`, those not inside another: the ones preopened)."""
    every = sorted({p.rsplit("/", 1)[0] for p in paths})
    return every, [f for f in every if not any(o != f and guestpath.within(f, o) for o in every)]


class OutputsOverLimit(Exception):
    """The guest wrote more than its output bounds allow; `str()` says what, for an error."""


class Outputs:
    """The output folders of one instance, under `root` (the instance's private folder)."""

    def __init__(self, root: Path, paths: Iterable[str], *, max_entries: int, max_bytes: int,
                 service: str) -> None:
        self.paths = tuple(paths)
        self._root = root / "outputs"
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._service = service
        self._folders, top = folders(self.paths)
        self.preopened = tuple(top)

    def create(self) -> list[tuple[Path, str]]:
        """Make the folders; (host folder, guest path) of each one to preopen read-write."""
        for folder in self._folders:
            self._host(folder).mkdir(parents=True, exist_ok=True)
        return [(self._host(f), f) for f in self.preopened]

    def check(self) -> None:
        """OutputsOverLimit when the folders hold more entries or bytes than allowed. Stops
        walking at the first bound passed: a guest's thousands of files cost one bound's worth."""
        entries, size = 0, 0
        stack = [self._host(f) for f in self.preopened]
        while stack:
            try:
                with os.scandir(stack.pop()) as it:
                    for entry in it:
                        entries += 1
                        if entries > self._max_entries:
                            raise OutputsOverLimit(
                                f"made more than {self._max_entries} entries in its output "
                                f"folders (services.{self._service}.limits.files)")
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            size += entry.stat(follow_symlinks=False).st_size
                            if size > self._max_bytes:
                                raise OutputsOverLimit(
                                    f"wrote more than {self._max_bytes} bytes to its output "
                                    f"folders (services.{self._service}.limits.files_size)")
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue  # removed or replaced by the guest meanwhile

    def collect(self) -> tuple[tuple[str, bytes], ...]:
        """(guest path, bytes) of each output the guest left as a regular file, in the order
        given; OutputsOverLimit when they hold more than the bounds allow together."""
        self.check()
        out = []
        left = self._max_bytes
        with Root.open(self._root) as root:
            for path in self.paths:
                data = self._read(root, path, left)
                if data is not None:
                    out.append((path, data))
                    left -= len(data)
        return tuple(out)

    def _read(self, root: Root, path: str, limit: int) -> bytes | None:
        """The file at guest `path`, opened beneath the outputs root (a link the guest planted
        that leads out is refused) without blocking; None unless it is a regular file."""
        try:
            fd = root.open_fd(path, FILE_FLAGS | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None  # not written, a link, or a link out of the folder
        try:
            if not is_regular(fd):
                return None
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(limit + 1)
        except OSError:
            return None  # unreadable: as if not written
        finally:
            os.close(fd)
        if len(data) > limit:
            raise OutputsOverLimit(
                f"wrote more than {self._max_bytes} bytes to its output files "
                f"(services.{self._service}.limits.files_size)")
        return data

    def _host(self, guest: str) -> Path:
        return self._root.joinpath(*guest.strip("/").split("/"))

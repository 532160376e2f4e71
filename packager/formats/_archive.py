"""Reproducible archives: sorted entries, fixed owners and modes, fixed times (tar.gz: _parts)."""

from __future__ import annotations

import os
import stat
import time
import zipfile
from pathlib import Path

from wvwasi.packager.stage import walk

_ZIP_EPOCH = 315532800  # 1980-01-01, the earliest time a zip entry can carry


def normal_mode(path: Path) -> int:
    """0o755 for folders and executables, 0o644 for other files (permission bits only)."""
    st = path.lstat()
    if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111:
        return 0o755
    return 0o644


def normalize_tree(top: Path, mtime: int | None) -> None:
    """Give every entry under `top` (and `top`) normal modes and, if set, mtime `mtime`."""
    for path in [top, *walk(top)]:
        if not path.is_symlink():
            path.chmod(normal_mode(path))
        if mtime is not None:
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def write_zip(top: Path, out: Path, prefix: str, mtime: int | None) -> Path:
    """`top`'s contents as `out` (.zip) under folder `prefix`."""
    stamp = time.gmtime(max(mtime if mtime is not None else time.time(), _ZIP_EPOCH))[:6]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in walk(top):
            name = f"{prefix}/{path.relative_to(top).as_posix()}"
            if path.is_dir():
                info = zipfile.ZipInfo(name + "/", stamp)
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                z.writestr(info, b"")
                continue
            info = zipfile.ZipInfo(name, stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | normal_mode(path)) << 16
            with open(path, "rb") as f:
                z.writestr(info, f.read())
    return out

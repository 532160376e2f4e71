"""Compressed tar streams assembled from cached parts, so a rebuild only compresses what changed.

A package's file tree is written as one tar stream cut into *parts*: the frozen runtime's
`_internal/` folder is one part, each other file of 1 MiB or more is a part of its own, and each
run of smaller entries between them is one part. Every part is
compressed on its own and cached by the SHA-256 of its uncompressed bytes (tar headers
included), so after a UI edit the runtime's and the services' parts come from the cache and
only the small part holding the UI is compressed again. The parts are then joined into a stream
every reader accepts:

- gzip: one gzip member per part (RFC 1952 allows concatenated members; gzip, tar, dpkg and
  Python read them as one stream);
- xz: one xz *block* per part inside a single xz stream with a rebuilt index (the layout
  `xz -T` writes). Separate xz streams would not do: dpkg stops after the first one.

The result is byte-for-byte the same whether parts came from the cache or not.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import struct
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wvwasi.packager.caches import cached_blob
from wvwasi.packager.formats._archive import normal_mode
from wvwasi.packager.stage import walk

#: Files at least this big are parts of their own (outside the runtime, which is one part:
#: it only ever changes as a whole, and one part compresses as well as dpkg-deb's one stream).
BIG = 1 << 20
RUNTIME = "runtime"
#: Parts smaller than this are not worth a cache entry.
CACHED_MIN = 64 << 10
XZ_PRESET = 7
_XZ_DICT = 16 << 20  # preset 7's dictionary
GZIP_LEVEL = 6


@dataclass(frozen=True)
class Entry:
    """One tar member: `source` on disk (file, folder or symlink), else `content` (a file) or
    a folder."""

    name: str  # the member name ("./opt/app/x", "app-1.0/x")
    source: Path | None
    group: str = ""  # a part never mixes groups: the runtime's files are kept apart
    content: bytes | None = None  # a regular file made in memory (no `source`)


def tree_entries(top: Path, prefix: str, *, include_top: bool = True,
                 runtime: str | None = None) -> Iterator[Entry]:
    """`top` and everything under it (sorted, parents first) as members under `prefix`;
    entries under `top/runtime` (the frozen runtime's `_internal`) form their own group."""
    if include_top:
        yield Entry(prefix, top)
    for path in walk(top):
        rel = path.relative_to(top).as_posix()
        inside = runtime and (rel == runtime or rel.startswith(runtime + "/"))
        group = RUNTIME if inside else ""
        yield Entry(f"{prefix}/{rel}", path, group)


def folder_entries(names: Iterable[str]) -> Iterator[Entry]:
    """Folder members with no counterpart on disk (`./`, `./opt/`)."""
    return (Entry(n, None) for n in names)


def _member(entry: Entry, mtime: int | None) -> tuple[bytes, bytes | None]:
    """The member's header (GNU format, root-owned, normal modes) and its file content."""
    info = tarfile.TarInfo(entry.name)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    path = entry.source
    data: bytes | None = None
    if path is None:
        info.mtime = mtime or 0
        if entry.content is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        else:
            info.type, info.size, info.mode = tarfile.REGTYPE, len(entry.content), 0o644
            data = entry.content
    else:
        st = path.lstat()
        info.mtime = mtime if mtime is not None else int(st.st_mtime)
        if path.is_symlink():
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
        elif path.is_dir():
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        else:
            data = path.read_bytes()
            info.type, info.size, info.mode = tarfile.REGTYPE, len(data), normal_mode(path)
    if info.isdir() and not info.name.endswith("/"):
        info.name += "/"
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"), data


def tar_parts(entries: Iterable[Entry], mtime: int | None) -> list[bytes]:
    """The uncompressed tar stream of `entries`, cut into parts (the last one ends the
    archive)."""
    parts: list[bytes] = []
    run = bytearray()
    group = ""
    for entry in entries:
        if entry.group != group and run:
            parts.append(bytes(run))
            run = bytearray()
        group = entry.group
        header, data = _member(entry, mtime)
        if data is None:
            run += header
            continue
        pad = b"\0" * (-len(data) % tarfile.BLOCKSIZE)
        if len(data) >= BIG and entry.group != RUNTIME:
            if run:
                parts.append(bytes(run))
                run = bytearray()
            parts.append(header + data + pad)
        else:
            run += header + data + pad
    run += b"\0" * (2 * tarfile.BLOCKSIZE)  # end of archive
    run += b"\0" * (-len(run) % tarfile.RECORDSIZE)
    parts.append(bytes(run))
    return parts


def write_targz(top: Path, out: Path, prefix: str, mtime: int | None) -> Path:
    """`top`'s contents as `out` (.tar.gz) under folder `prefix`, owned by root, gzip members
    from the parts cache."""
    out.write_bytes(compress(tar_parts(tree_entries(top, prefix, runtime="_internal"), mtime),
                             "gzip"))
    return out


def compress(parts: list[bytes], codec: str) -> bytes:
    """The parts as one `codec` ("xz" or "gzip") stream, compressed parts reused from the
    cache; cache misses are compressed in parallel."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        done = list(pool.map(lambda p: _cached_part(p, codec), parts))
    if codec == "gzip":
        return b"".join(done)
    return _xz_join(done)


def _compress_part(data: bytes, codec: str) -> bytes:
    if codec == "gzip":
        return gzip.compress(data, GZIP_LEVEL, mtime=0)
    # the dictionary never larger than the part: same output, far less memory to set up
    lzma2 = {"id": lzma.FILTER_LZMA2, "preset": XZ_PRESET,
             "dict_size": max(1 << 16, min(_XZ_DICT, len(data)))}
    return lzma.compress(data, lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=[lzma2])


def _cached_part(data: bytes, codec: str) -> bytes:
    """`data` compressed as a whole stream of its own, from the cache if there."""
    if len(data) < CACHED_MIN:
        return _compress_part(data, codec)
    return cached_blob(f"part-{codec}-{hashlib.sha256(data).hexdigest()}",
                       lambda: _compress_part(data, codec))


# -- xz: several single-block streams -> one multi-block stream ------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _xz_block(stream: bytes) -> tuple[bytes, bytes, int, int]:
    """(stream flags, the one block's bytes, its unpadded size, its uncompressed size) of a
    stream liblzma wrote from one buffer."""
    flags = stream[6:8]
    backward = (struct.unpack("<I", stream[-8:-4])[0] + 1) * 4
    index = stream[-12 - backward:-12]
    count, pos = _read_varint(index, 1)
    if index[0] != 0 or count != 1:
        raise ValueError(f"expected an xz stream of one block, got {count}")
    unpadded, pos = _read_varint(index, pos)
    uncompressed, pos = _read_varint(index, pos)
    return flags, stream[12:-12 - backward], unpadded, uncompressed


def _xz_join(streams: list[bytes]) -> bytes:
    """Single-block xz streams (same check) joined into one stream of those blocks."""
    blocks = [_xz_block(s) for s in streams]
    flags = blocks[0][0]
    index = bytearray(b"\0" + _varint(len(blocks)))
    for _f, _b, unpadded, uncompressed in blocks:
        index += _varint(unpadded) + _varint(uncompressed)
    index += b"\0" * (-len(index) % 4)
    index += struct.pack("<I", zlib.crc32(index))
    header = b"\xfd7zXZ\0" + flags + struct.pack("<I", zlib.crc32(flags))
    tail = struct.pack("<I", len(index) // 4 - 1) + flags
    footer = struct.pack("<I", zlib.crc32(tail)) + tail + b"YZ"
    return header + b"".join(b for _f, b, _u, _c in blocks) + bytes(index) + footer

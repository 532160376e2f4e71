"""RPM v4 package files written directly, without rpmbuild (the way google/rpmpack does it).

    lead (96 bytes) | signature header, padded to 8 bytes | header | compressed cpio payload

A header is a magic, an index of (tag, type, offset, count) entries sorted by tag, and a data
store (integers aligned to their size). Its first entry is the *region* tag (62 for the
signature header, 63 for the header), whose 16-byte trailer at the end of the store says how
many entries the region covers. The signature header holds the digests `rpm -K` checks (of the
header, and of header + payload); the header holds the package's tags, the file list (one array
per field) and the SHA-256 of the compressed payload. The payload is a cpio archive in the
"new ASCII" (newc) format, member names "./<path>", in the header's file order.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

#: Header data types (rpm's rpmTagType).
INT16, INT32, STRING, BIN, STRING_ARRAY, I18NSTRING = 3, 4, 6, 7, 8, 9
_ALIGN = {INT16: 2, INT32: 4}
_MAGIC = b"\x8e\xad\xe8\x01\0\0\0\0"
SIGNATURES, IMMUTABLE = 62, 63

Value = str | bytes | Sequence[int] | Sequence[str]

#: The lead's architecture numbers (rpmrc's arch_canon) by rpm arch name.
_ARCHNUM = {"x86_64": 1, "aarch64": 19}


def header(tags: Mapping[int, tuple[int, Value]], region: int) -> bytes:
    """A header of `tags` (tag -> (type, value)) whose region tag is `region`."""
    index, store = [], bytearray()
    for tag in sorted(tags):
        kind, value = tags[tag]
        data, count = _encode(kind, value)
        store += b"\0" * (-len(store) % _ALIGN.get(kind, 1))
        index.append(struct.pack(">4i", tag, kind, len(store), count))
        store += data
    entries = len(index) + 1
    trailer_at = len(store)
    store += struct.pack(">4i", region, BIN, -16 * entries, 16)
    return (_MAGIC + struct.pack(">2i", entries, len(store))
            + struct.pack(">4i", region, BIN, trailer_at, 16) + b"".join(index) + bytes(store))


def _encode(kind: int, value: Value) -> tuple[bytes, int]:
    """The store bytes of one entry and its count."""
    if kind in (STRING, I18NSTRING):
        assert isinstance(value, str)
        return value.encode() + b"\0", 1
    if kind == BIN:
        assert isinstance(value, bytes)
        return value, len(value)
    assert not isinstance(value, (str, bytes))
    if kind == STRING_ARRAY:
        return b"".join(str(v).encode() + b"\0" for v in value), len(value)
    code = {INT16: "H", INT32: "I"}[kind]
    mask = (1 << (8 * struct.calcsize(code))) - 1
    return struct.pack(f">{len(value)}{code}", *(int(v) & mask for v in value)), len(value)


def lead(name: str, arch: str) -> bytes:
    """The 96-byte lead (read only by `file` and very old tools; the headers say it all)."""
    return struct.pack(">4sBBhh66shh16x", b"\xed\xab\xee\xdb", 3, 0, 0, _ARCHNUM.get(arch, 0),
                       name.encode()[:65], 1, 5)


def padded_signature(tags: Mapping[int, tuple[int, Value]]) -> bytes:
    """The signature header, padded to a multiple of 8 bytes as the header must start there."""
    sig = header(tags, SIGNATURES)
    return sig + b"\0" * (-len(sig) % 8)


def cpio_header(name: str, mode: int, mtime: int, size: int, ino: int) -> bytes:
    """A newc cpio member header (root-owned) with its name, padded to 4 bytes."""
    nlink = 2 if mode & 0o170000 == 0o040000 else 1
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, len(name.encode()) + 1, 0)
    out = b"070701" + "".join(f"{f:08x}" for f in fields).encode() + name.encode() + b"\0"
    return out + b"\0" * (-len(out) % 4)


#: The member that ends a cpio archive.
CPIO_TRAILER = cpio_header("TRAILER!!!", 0, 0, 0, 0)

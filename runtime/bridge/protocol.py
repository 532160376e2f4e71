"""The bridge's wire format: binary WebSocket frames that pack length-prefixed records.

A record is `[u32 LE payload length][u8 op][u32 LE id][payload]`; one frame holds one or more,
in both directions. `id` names a page-side endpoint (a worker, a `run` call, a folder request),
chosen by the page; 0 addresses the whole page. docs/architecture.md ("Bridge protocol") lists
each op's payload. wvwasi.js receives `Op`, `WINDOW` and `MAX_FRAME` from `page_constants()`;
the record header is written and read in the page by runtime/js/wasi-wire.js (`HEADER`,
`writeRecords`, `readRecords`, shared with the web engine and tested against this module in
tests/test_wire.py), so the two sides cannot drift apart.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from enum import IntEnum
from typing import Any

HEADER = struct.Struct("<IBI")
U32 = struct.Struct("<I")
#: Bytes of MESSAGE/STDERR (bridge -> page) and SEND/STDIN (page -> bridge) records, headers
#: included, that may be in flight per worker before the receiver returns CREDIT.
WINDOW = 1 << 20
#: The largest WebSocket frame either side sends (so the largest spawn with `files`).
MAX_FRAME = 64 << 20
#: The bridge packs records into frames of about this size.
FRAME_TARGET = 1 << 20
#: The largest JSON part of a SPAWN/RUN/PICK record.
MAX_JSON = 1 << 20
#: Output files (spawn `outputs`) reach the page in OUTPUT records of at most this many bytes.
OUTPUT_PIECE = 1 << 20


class Op(IntEnum):
    """Record kinds. 1-15 travel page -> bridge, 16-31 bridge -> page, CREDIT both ways."""

    SPAWN = 1  # JSON spec + file bytes: start a worker
    SEND = 2  # one message (UTF-8 text in `lines` mode)
    STDIN = 3  # raw bytes for stdin
    CLOSE_STDIN = 4
    TERMINATE = 5
    CREDIT = 6  # u32: window bytes the sender of this record has consumed
    RUN = 7  # JSON spec + file bytes + stdin: run a task to completion
    PICK = 8  # JSON {mode, kind?, ...}: open the native folder picker or file dialog
    MOUNT = 9  # JSON {grant | preopen, mode?}: lend a host folder to a page-supplied module
    FS_CALL = 10  # one file call on the mount of this id (runtime/bridge/hostfs.py's wire format)
    READ = 11  # JSON {grant}: the content of a file grant (answered by DATA or ERROR)
    WRITE = 12  # JSON {grant} + bytes: replace a read-write file grant's file (DATA or ERROR)
    APP = 13  # JSON {call, args}: a `wvwasi.window` call (DATA with its JSON result, or ERROR)
    MESSAGE = 16  # one message from the service
    STDERR = 17  # one stderr line (UTF-8)
    EXIT = 18  # JSON {code, error}: the worker has ended
    ERROR = 19  # JSON {kind, message}: a spawn, run or pick was refused or failed
    RESULT = 20  # JSON {exitCode, stdoutLength, error} + stdout + stderr
    GRANT = 21  # JSON {grant, name, mode, kind}, or {grants: [...]} for files
    RELOAD = 22  # id 0: reload the page (`wvwasi dev`)
    MOUNTED = 23  # JSON {mode}: the folder is lent; FS_CALL records on this id may follow
    FS_REPLY = 24  # the answer to the mount's FS_CALL
    OUTPUT = 25  # JSON {path} + bytes: a piece of an output file, before EXIT/RESULT
    DATA = 26  # a READ's bytes, or empty: a WRITE is done


#: Op by its wire value: a dict lookup per record instead of an `Op(n)` enum call.
_OPS = {op.value: op for op in Op}


class ProtocolError(ValueError):
    """A frame or record that does not follow the protocol; its connection is closed (1002)."""

    close_code = 1002


class PolicyError(ProtocolError):
    """A page over one of the bridge's bounds (input credit); its connection is closed (1008)."""

    close_code = 1008


def record(op: Op, ident: int, payload: bytes = b"") -> bytes:
    """One encoded record."""
    return HEADER.pack(len(payload), op, ident) + payload


def json_record(op: Op, ident: int, obj: Any, *blobs: bytes | memoryview) -> bytes:
    """A record whose payload is `u32 JSON length + JSON + blobs`."""
    text = json.dumps(obj, separators=(",", ":")).encode()
    size = U32.size + len(text) + sum(map(len, blobs))
    return b"".join((HEADER.pack(size, op, ident), U32.pack(len(text)), text, *blobs))  # 1 copy


def output_records(ident: int, outputs: tuple[tuple[str, bytes], ...]) -> Iterator[bytes]:
    """The OUTPUT records of an instance's output files (each file in order, in pieces; an
    empty file is one empty piece), made one at a time as they are taken."""
    for path, data in outputs:
        view = memoryview(data)
        for start in range(0, max(len(view), 1), OUTPUT_PIECE):
            yield json_record(Op.OUTPUT, ident, {"path": path},
                              view[start : start + OUTPUT_PIECE])


def iter_records(frame: bytes) -> Iterator[tuple[Op, int, memoryview]]:
    """The records of one frame, in order; ProtocolError on a cut record or an unknown op."""
    view = memoryview(frame)
    pos, end = 0, len(view)
    if not end:
        raise ProtocolError("empty frame")
    while pos < end:
        if end - pos < HEADER.size:
            raise ProtocolError(f"truncated record header at byte {pos}")
        length, op, ident = HEADER.unpack_from(view, pos)
        start = pos + HEADER.size
        pos = start + length
        if pos > end:
            raise ProtocolError(f"record at byte {start - HEADER.size} claims {length} bytes, "
                                f"the frame has {end - start}")
        kind = _OPS.get(op)
        if kind is None:
            raise ProtocolError(f"unknown op {op}")
        yield kind, ident, view[start:pos]


def parse_json(raw: bytes) -> Any:
    """The one decoder for JSON from a page (records and file calls): ProtocolError (a
    ValueError) for bad JSON or UTF-8, nesting too deep for the parser, huge integers."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ProtocolError("JSON nested too deeply") from None
    except ValueError as e:  # bad JSON or UTF-8, an integer of thousands of digits
        raise ProtocolError(f"bad JSON in record: {str(e)[:80]}") from None


def split_json(payload: memoryview) -> tuple[dict[str, Any], memoryview]:
    """Parse a `u32 length + JSON object + rest` payload into (object, rest)."""
    if len(payload) < U32.size:
        raise ProtocolError("payload too short for its JSON header")
    (length,) = U32.unpack_from(payload)
    if U32.size + length > len(payload):
        raise ProtocolError("JSON header longer than its record")
    if length > MAX_JSON:
        raise ProtocolError(f"the JSON of a record is limited to {MAX_JSON} bytes, got {length}")
    obj = parse_json(bytes(payload[U32.size : U32.size + length]))
    if not isinstance(obj, dict):
        raise ProtocolError("record JSON must be an object")
    return obj, payload[U32.size + length :]


def read_u32(payload: memoryview) -> int:
    """The payload of a CREDIT record."""
    if len(payload) != U32.size:
        raise ProtocolError(f"CREDIT carries 4 bytes, got {len(payload)}")
    return int(U32.unpack(payload)[0])


def page_constants() -> dict[str, Any]:
    """What wvwasi.js needs to speak this protocol."""
    return {
        "ops": {op.name: int(op) for op in Op},
        "window": WINDOW,
        "maxFrame": MAX_FRAME,
    }

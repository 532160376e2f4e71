"""runtime/js/wasi-wire.js against the Python side of the same formats: the JS MessageDecoder
and runtime/host/framing.py's Decoder must cut the same chunks into the same messages and refuse
the same over-long lines and frames (with the same words); JSON payloads written by either side
must read back on the other. The JS runs in Node (Debian's nodejs, installed by .ci/setup).

Also: the bridge and the web build serve the wire module joined in front of wvwasi.js, handing
its exports over and leaking nothing else into the page.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Any

from wvwasi.runtime.bridge.protocol import (
    HEADER,
    Op,
    iter_records,
    json_record,
    record,
    split_json,
)
from wvwasi.runtime.bridge.static import JS_DIR, page_script
from wvwasi.runtime.host import framing

WIRE = JS_DIR / "wasi-wire.js"
#: Reads [[ipc, max, [chunk as a list of bytes...]], ...] and prints what MessageDecoder makes.
DECODE = """
const w = await import(process.argv[1]);
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = cases.map(([ipc, max, chunks]) => {
  const d = new w.MessageDecoder(ipc, max ?? undefined);
  const messages = [];
  try {
    for (const c of chunks) for (const m of d.feed(Uint8Array.from(c))) messages.push([...m]);
    for (const m of d.finish()) messages.push([...m]);
    return {messages};
  } catch (e) {
    if (!(e instanceof w.MessageTooLong)) throw e;
    return {messages, error: e.message};
  }
});
console.log(JSON.stringify(out));
"""


def node(script: str, stdin: str, *args: str) -> Any:
    wrapped = f"import {{createRequire}} from 'module'; const require = createRequire('/');{script}"
    proc = subprocess.run(["node", "--input-type=module", "-e", wrapped, *args], input=stdin,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def python_decode(ipc: framing.Ipc, limit: int | None, chunks: list[bytes]) -> dict[str, Any]:
    decoder = framing.Decoder(ipc, limit if limit is not None else framing.MAX_FRAME)
    messages: list[list[int]] = []
    try:
        for chunk in [*chunks, None]:
            got = decoder.finish() if chunk is None else decoder.feed(chunk)
            messages += [list(m.encode() if isinstance(m, str) else m) for m in got]
    except framing.MessageTooLong as e:
        return {"messages": messages, "error": str(e)}
    return {"messages": messages}


def frame(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


CASES: list[tuple[framing.Ipc, int | None, list[bytes]]] = [
    ("lines", None, [b"one\ntw", b"o\n\nthree"]),
    ("lines", None, [b"\n\n", b"", b"last"]),
    ("lines", 4, [b"abcd\nefgh\n"]),  # exactly at the limit
    ("lines", 4, [b"abcde\n"]),  # one over, completed in the chunk
    ("lines", 4, [b"ab", b"cde"]),  # over while still unterminated
    ("lines", 4, [b"ok\n", b"abc", b"de\nx\n"]),  # over across chunks
    ("frames", None, [frame(b"a") + frame(b"") + frame(b"bcd")[:3], frame(b"bcd")[3:]]),
    ("frames", None, [frame(b"x" * 300)[:2], frame(b"x" * 300)[2:]]),
    ("frames", 3, [frame(b"abc") + frame(b"abcd")]),  # a header announcing too much
    ("frames", None, [frame(b"cut")[:-1]]),  # a cut frame at the end is no message
    ("stream", None, [b"a", b"", b"bc"]),
]


def test_message_decoders_agree() -> None:
    payload = json.dumps([[ipc, limit, [list(c) for c in chunks]]
                          for ipc, limit, chunks in CASES])
    got = node(DECODE, payload, str(WIRE))
    want = [python_decode(*case) for case in CASES]
    assert got == want
    assert sum("error" in w for w in want) == 4  # the refusals are compared too


def test_json_payloads_cross_over() -> None:
    head = {"exitCode": 3, "text": "h\u00e9llo \u2713", "error": None}
    written = json_record(Op.RESULT, 1, head, b"\x00\xffout", b"err")[9:]  # its payload
    script = """
    const w = await import(process.argv[1]);
    const [obj, rest] = w.readJson(Uint8Array.from(JSON.parse(process.argv[2])));
    const back = w.jsonPayload({...obj, seen: true}, [rest, new Uint8Array([7])]);
    console.log(JSON.stringify({obj, rest: [...rest], back: [...back]}));
    """
    got = node(script, "", str(WIRE), json.dumps(list(written)))
    assert got["obj"] == head
    assert bytes(got["rest"]) == b"\x00\xffouterr"
    obj, rest = split_json(memoryview(bytes(got["back"])))
    assert obj == {**head, "seen": True}
    assert bytes(rest) == b"\x00\xffouterr\x07"


def test_records_cross_over() -> None:
    """Record headers: frames the bridge writes (protocol.record) read back in JS record by
    record, and frames JS writes (writeRecords, also with a payload already in place) parse in
    Python (iter_records) to the same records."""
    records = [(Op.MESSAGE, 7, b"hi"), (Op.EXIT, 0xFFFFFFFE, b""), (Op.OUTPUT, 3, b"x" * 300)]
    python_frame = b"".join(record(op, i, data) for op, i, data in records)
    script = """
    const w = await import(process.argv[1]);
    const frame = Uint8Array.from(JSON.parse(process.argv[2]));
    const padded = new Uint8Array(frame.length + 5);
    padded.set(frame, 5);
    const read = [];  // from a view that does not start its buffer
    w.readRecords(padded.subarray(5), (op, id, start, length) => {
      read.push([op, id, [...padded.slice(start, start + length)]]);
    });
    const firstOnly = [];
    w.readRecords(frame, (op) => { firstOnly.push(op); return false; });
    const records = read.map(([op, id, data]) => [op, id, Uint8Array.from(data)]);
    const size = records.reduce((n, r) => n + w.HEADER + r[2].length, 0);
    const written = w.writeRecords(new Uint8Array(size), records);
    const lone = new Uint8Array(new ArrayBuffer(w.HEADER + 3), w.HEADER);
    lone.set([1, 2, 3]);
    const inPlace = w.writeRecords(new Uint8Array(lone.buffer), [[5, 9, lone]]);
    console.log(JSON.stringify({header: w.HEADER, read, firstOnly, written: [...written],
      inPlace: [...inPlace]}));
    """
    got = node(script, "", str(WIRE), json.dumps(list(python_frame)))
    assert got["header"] == HEADER.size
    assert [(Op(op), i, bytes(d)) for op, i, d in got["read"]] == records
    assert got["firstOnly"] == [Op.MESSAGE]
    assert bytes(got["written"]) == python_frame
    assert [(op, i, bytes(d)) for op, i, d in iter_records(bytes(got["inPlace"]))] == [
        (Op(5), 9, b"\x01\x02\x03")]


def test_encode_message_matches_the_host() -> None:
    script = """
    const w = await import(process.argv[1]);
    const out = ['lines', 'frames', 'stream'].map((ipc) => [...w.encodeMessage(ipc,
        new TextEncoder().encode('h\u00e9'))]);
    console.log(JSON.stringify(out));
    """
    got = node(script, "", str(WIRE))
    assert [bytes(b) for b in got] == [framing.encode("lines", "h\u00e9"),
                                       framing.encode("frames", "h\u00e9".encode()),
                                       framing.encode("stream", "h\u00e9".encode())]


def test_the_page_script_joins_the_wire_module_without_leaking(tmp_path: Path) -> None:
    script = page_script({"services": {}}, "globalThis.before = typeof __wvwasiConfig;\n")
    # Run it with a stub wvwasi.js body cut off: only the config, prelude and wire part.
    head = script.decode().split("(() => {\n  'use strict';\n  if (globalThis.WasiWorker)")[0]
    probe = tmp_path / "probe.js"
    probe.write_text(head + """
    const wire = globalThis.__wvwasiWire;
    const leaked = ['jsonPayload', 'readJson', 'MessageDecoder', 'encoder', 'decoder']
      .filter((name) => name in globalThis);
    console.log(JSON.stringify({keys: Object.keys(wire).sort(), leaked,
      before: globalThis.before}));
    """)
    proc = subprocess.run(["node", str(probe)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "keys": ["HEADER", "MessageDecoder", "MessageTooLong", "concat", "encodeMessage",
                 "jsonPayload", "readJson", "readRecords", "writeRecords"],
        "leaked": [],
        "before": "object",
    }
    # the framing is written once: the other scripts import or receive it
    for name in ("wvwasi.js", "wasi-web.js", "wasi-hostfs.js"):
        text = (JS_DIR / name).read_text()
        assert "setUint32(0, head" not in text and "class Decoder" not in text, name
    for name in ("wvwasi.js", "wasi-web.js"):  # nor do they write or read record headers
        text = (JS_DIR / name).read_text()
        assert "setUint8(" not in text and "getUint8(" not in text, name

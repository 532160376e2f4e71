"""What a Windows/macOS onefile launch spends hashing a large `.cwasm`: frozen_main's payload
check followed by the service loader, once as the runtime does it now (the loader takes the
check's word for a file that kept its device, inode, size and mtime: modules.note_checked) and
once as before (the loader hashes the artefact again: the noted checks are forgotten in between).
Both in the same run, alternated, several rounds; the payload is a real artefact (a module with
one big data segment, precompiled as `wvwasi build` does) and its `.wasm` packed beside it.

    .venv/bin/python bench/bench_launch_hashing.py [--mb 160] [--rounds 7]

Warm page cache (a launch right after an earlier one); wall-clock medians on whatever else the
machine is doing (load average printed before and after): compare within one run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import wasmtime

from wvwasi.runtime import frozen_main
from wvwasi.runtime.host import modules


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def section(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + leb128(len(body)) + body


def big_module(size: int) -> bytes:
    """A valid module with one memory and one `size`-byte active data segment."""
    data = os.urandom(size)
    pages = -(-size // 65536)
    memory = section(5, b"\x01\x00" + leb128(pages))
    segment = b"\x00\x41\x00\x0b" + leb128(size) + data  # memory 0, at i32.const 0
    return b"\0asm\x01\0\0\0" + memory + section(11, b"\x01" + segment)


def launch(archive: zipfile.ZipFile, cache: Path, engine: wasmtime.Engine, twice: bool) -> float:
    start = time.perf_counter()
    app = frozen_main.extract_cached(archive, cache) / frozen_main.PAYLOAD
    if twice:
        modules._checked.clear()  # the loader then hashes as it did before
    loader = modules.ModuleLoader(engine, None, app / "precompiled")
    loader.load(app / "services" / "big.wasm")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp) / "app"
        wasm = payload / "services" / "big.wasm"
        wasm.parent.mkdir(parents=True)
        wasm.write_bytes(big_module(args.mb << 20))
        artefact = modules.precompile(wasm, payload / "precompiled" / "big.cwasm")
        modules.packed_path(wasm).write_bytes(gzip.compress(wasm.read_bytes(), 1))
        wasm.unlink()
        modules.write_payload_digests(payload)
        cwasm_mb = artefact.stat().st_size / 2**20
        exe = Path(tmp) / "app.exe"
        with zipfile.ZipFile(exe, "w") as z:
            for p in sorted(payload.rglob("*")):
                if p.is_file():
                    z.write(p, f"app/{p.relative_to(payload).as_posix()}")
        engine = modules.make_engine()
        times: dict[bool, list[float]] = {True: [], False: []}
        with zipfile.ZipFile(exe) as archive:
            cache = Path(tmp) / "code"
            launch(archive, cache, engine, True)  # extracts; warms the page cache
            for _ in range(args.rounds):
                for twice in (True, False):
                    times[twice].append(launch(archive, cache, engine, twice))
    med = statistics.median
    print(json.dumps({"cwasm_mb": round(cwasm_mb, 1), "rounds": args.rounds,
                      "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)]}))
    print(f"launch, .cwasm hashed twice (before): {med(times[True]) * 1000:8.1f} ms "
          f"(min {min(times[True]) * 1000:.1f})")
    print(f"launch, .cwasm hashed once (now):     {med(times[False]) * 1000:8.1f} ms "
          f"(min {min(times[False]) * 1000:.1f}, "
          f"{med(times[True]) / med(times[False]):.2f}x faster)")


if __name__ == "__main__":
    main()

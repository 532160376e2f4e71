"""The bridge's own throughput for small pipelined messages, without a browser.

    .venv/bin/python bench/bench_bridge_pipelined.py [--n 200000] [--runs 3]

A client process plays the page over a real authenticated WebSocket (the same set-up as
bench/bench_roundtrip_stages.py: real Bridge, real ServiceHost, the `echo_lines` and
`echo_frames` fixtures) and keeps as many 16-byte messages in flight as the input window allows,
as wvwasi.js does: it sends SEND records packed into frames while the bridge's CREDIT leaves
room, returns output credit with its next frame, and checks every echo (in order, byte for
byte). What it measures is the host side's cost per message (bridge loop, stdin pipe, guest,
stdout read) plus this Python client's own; a browser adds its engine's (bench/bench_bridge.py,
bench/bench_window.py). Prints messages/s per run and the median; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_roundtrip_stages import serving_echo_app


async def _client(url: str, origin: str, cookie: str, service: str, n: int) -> float:
    import aiohttp

    from wvwasi.runtime.bridge.protocol import (
        HEADER,
        WINDOW,
        Op,
        iter_records,
        json_record,
        record,
    )

    bodies = [(f"message {i:08d}" if service == "echo" else f"{i:016d}").encode() for i in range(n)]
    async with aiohttp.ClientSession() as http, http.ws_connect(
        url, headers={"Cookie": cookie, "Origin": origin}, compress=0, max_msg_size=0
    ) as ws:
        await ws.send_bytes(json_record(Op.SPAWN, 1, {"service": service}))
        got = sent = owed = in_flight = 0
        t0 = time.perf_counter()
        while got < n:
            parts = []
            if owed:
                parts.append(record(Op.CREDIT, 1, owed.to_bytes(4, "little")))
                owed = 0
            while sent < n and in_flight + HEADER.size + 16 <= WINDOW:
                parts.append(record(Op.SEND, 1, bodies[sent]))
                sent += 1
                in_flight += HEADER.size + 16
            if parts:
                await ws.send_bytes(b"".join(parts))
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise SystemExit(f"the bridge closed the socket: {msg}")
            for op, _, payload in iter_records(msg.data):
                if op is Op.MESSAGE:
                    if payload != bodies[got]:
                        raise SystemExit(f"echo {got} is {bytes(payload)!r}, "
                                         f"not {bodies[got]!r}")
                    got += 1
                    owed += HEADER.size + len(payload)
                elif op is Op.CREDIT:
                    in_flight -= int.from_bytes(payload, "little")
        return n / (time.perf_counter() - t0)


def one_run(service: str, n: int) -> float:
    with serving_echo_app() as (url, origin, cookie):
        out = subprocess.run(
            [sys.executable, __file__, "--client", url, origin, cookie, service, str(n)],
            capture_output=True, text=True, check=True, timeout=600,
        )
    return float(json.loads(out.stdout))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, origin, cookie, service, n = sys.argv[2:]
        print(json.dumps(asyncio.run(_client(url, origin, cookie, service, int(n)))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="messages per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.n:,} 16-byte messages pipelined (up to the 1 MiB input window in flight), "
          "Python client over the bridge, messages/s:")
    results = {}
    for service, label in (("echo", "lines"), ("frames", "frames")):
        runs = [one_run(service, args.n) for _ in range(args.runs)]
        results[label] = runs
        print(f"{label:<8} {statistics.median(runs):>10,.0f}   "
              f"({', '.join(f'{r:,.0f}' for r in runs)})")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

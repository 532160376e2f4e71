"""One small round trip page -> service -> page, broken into stages with timestamps.

    .venv/bin/python bench/bench_roundtrip_stages.py [--n 2000] [--runs 3]

A client process plays the page over a real authenticated WebSocket (launch URL -> cookie +
socket key, Origin checked) against a real Bridge and ServiceHost running the `echo_lines` and
`echo_frames` fixtures, one message at a time. Both processes stamp CLOCK_MONOTONIC
(`time.monotonic_ns`, one clock for the whole machine); this process wraps four bridge functions
to stamp the server side (the wrappers cost a few microseconds, counted in the stages they
wrap). Per message:

  ws in      client sends the frame -> Session._input on the bridge's loop
  to guest   Session._input -> the guest's stdin written (at the end of the frame, straight into
             the pipe from the loop: Instance.try_write_stdin; else Instance.send, queued)
  guest      stdin written -> the message decoded from stdout (WorkerLink.on_messages: on the
             loop, which reads a dedicated worker's stdout itself)
  to loop    on_messages -> the frame taken by the outbox pump on the loop
  ws out     frame taken -> the client has it (client's receive)

Prints per-stage medians (µs) and the round trip, median of `--runs` runs. The client is a
Python aiohttp client, not Chromium: bench/bench_bridge.py has the browser's whole round trip.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

STAGES = ("ws in", "to guest", "guest", "to loop", "ws out")


# -- the client process (the page) ----------------------------------------------------------------

async def _client(
    url: str, origin: str, cookie: str, service: str, n: int, size: int
) -> list[list[int]]:
    import aiohttp

    from wvwasi.runtime.bridge.protocol import Op, iter_records, json_record, record

    text = service == "echo"
    stamps: list[list[int]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(
        url, headers={"Cookie": cookie, "Origin": origin}, compress=0
    ) as ws:
        await ws.send_bytes(json_record(Op.SPAWN, 1, {"service": service}))
        owed = 0
        for i in range(n):
            body = (f"message {i:08d}" if text else f"{i:016d}").encode()
            body = b"." * (size - len(body)) + body  # unique in its last 16 bytes
            frame = record(Op.SEND, 1, body)
            if owed:  # credit back what the last answer cost, as wvwasi.js does
                frame = record(Op.CREDIT, 1, owed.to_bytes(4, "little")) + frame
                owed = 0
            t0 = time.monotonic_ns()
            await ws.send_bytes(frame)
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise SystemExit(f"the bridge closed the socket: {msg}")
                got = [(op, bytes(p)) for op, _, p in iter_records(msg.data)]
                answers = [p for op, p in got if op is Op.MESSAGE]
                if answers:
                    break
            t5 = time.monotonic_ns()
            expect = body if text else len(body).to_bytes(4, "little") + body
            if answers[0] not in (body, expect):
                raise SystemExit(f"wrong echo {answers[0]!r} for {body!r}")
            owed += 9 + len(answers[0])
            stamps.append([t0, t5])
    return stamps


def client_main(args: list[str]) -> None:
    url, origin, cookie, service, n, size = args
    print(json.dumps(asyncio.run(_client(url, origin, cookie, service, int(n), int(size)))))


# -- the bridge process ---------------------------------------------------------------------------

class Stamps:
    """Server-side timestamps by message body (the message stays unique per round trip)."""

    def __init__(self) -> None:
        self.at: dict[str, dict[bytes, int]] = {k: {} for k in ("in", "written", "out", "taken")}

    def stamp(self, where: str, key: bytes | str) -> None:
        body = (key.encode() if isinstance(key, str) else bytes(key)).rstrip(b"\n")
        self.at[where].setdefault(body[-16:], time.monotonic_ns())


def instrument(stamps: Stamps) -> None:
    """Wrap the bridge's stage boundaries (this process only)."""
    from wvwasi.runtime.bridge import flow, link, session
    from wvwasi.runtime.bridge.protocol import Op, iter_records
    from wvwasi.runtime.host.instance import Instance

    orig_input = session.Session._input

    def _input(self: Any, op: Op, ident: int, payload: memoryview, *rest: Any) -> Any:
        if op is Op.SEND:
            stamps.stamp("in", payload)
        return orig_input(self, op, ident, payload, *rest)

    session.Session._input = _input  # type: ignore[method-assign]

    for name in ("send", "try_write_stdin"):
        orig = getattr(Instance, name, None)
        if orig is None:
            continue

        def wrapped(self: Any, message: Any, _orig: Any = orig) -> Any:
            result = _orig(self, message)
            if result is not False:
                stamps.stamp("written", message)
            return result

        setattr(Instance, name, wrapped)

    orig_messages = link.WorkerLink.on_messages

    def on_messages(self: Any, messages: list[Any]) -> Any:
        for message in messages:
            stamps.stamp("out", message)
        return orig_messages(self, messages)

    link.WorkerLink.on_messages = on_messages  # type: ignore[method-assign]

    orig_take = flow.Outbox._take_frame

    def take(self: Any) -> bytes | None:
        frame = orig_take(self)
        if frame is not None:
            for op, _, payload in iter_records(frame):
                if op is Op.MESSAGE:
                    stamps.stamp("taken", payload)
        return frame

    flow.Outbox._take_frame = take  # type: ignore[method-assign]


@contextlib.contextmanager
def serving_echo_app() -> Iterator[tuple[str, str, str]]:
    """A real Bridge and ServiceHost serving the `echo` (lines) and `frames` fixtures, logged in
    as the page would be: (WebSocket URL with its key, Origin, session cookie)."""
    from bridge_client import launch_with
    from projects import write_project
    from wasm import SOURCE_DIR, build_fixtures

    from wvwasi.runtime.bridge.server import Bridge
    from wvwasi.runtime.host.service_host import ServiceHost
    from wvwasi.runtime.manifest import load_manifest
    from wvwasi.runtime.paths import PathContext

    wasm = build_fixtures([SOURCE_DIR / f"{name}.c" for name in ("echo_lines", "echo_frames")])
    with tempfile.TemporaryDirectory(prefix="wvwasi-bench-bridge-client-") as tmp_name:
        tmp = Path(tmp_name)
        root = write_project(tmp / "app", {
            "echo": {"source": "echo_lines", "kind": "dedicated"},
            "frames": {"source": "echo_frames", "kind": "dedicated", "ipc": "frames"},
        }, resolve_wasm=wasm.__getitem__)
        manifest = load_manifest(root)
        paths = PathContext.for_app(manifest, base_dirs={"CACHE": tmp / "cache",
                                                         "APPDATA": tmp / "appdata"})
        with ServiceHost(manifest, paths=paths) as host, Bridge(manifest, host) as bridge:
            creds = launch_with(bridge.launch_url())
            yield creds.ws_url(), creds.origin, creds.cookie


def one_run(service: str, n: int, size: int, stamps: Stamps) -> dict[str, float]:
    with serving_echo_app() as (url, origin, cookie):
        out = subprocess.run(
            [sys.executable, __file__, "--client", url, origin, cookie, service,
             str(n), str(size)], capture_output=True, text=True, check=True, timeout=600,
        )
    client = json.loads(out.stdout)
    per: dict[str, list[int]] = {s: [] for s in (*STAGES, "round trip")}
    keys = [(f"message {i:08d}" if service == "echo" else f"{i:016d}").encode()[-16:]
            for i in range(n)]
    for key, (t0, t5) in list(zip(keys, client, strict=True))[n // 10:]:  # the first tenth warms up
        at = [stamps.at[w].get(key) for w in ("in", "written", "out", "taken")]
        if None in at:
            continue
        t = [t0, *at, t5]
        for stage, a, b in zip(STAGES, t, t[1:], strict=False):
            per[stage].append(b - a)
        per["round trip"].append(t5 - t0)
    return {k: statistics.median(v) / 1000 for k, v in per.items() if v}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=16, help="message bytes (at least 16)")
    args = parser.parse_args()
    from wvwasi.runtime.bridge import server

    del server  # imported first so that `instrument` patches the modules the bridge uses
    stamps_note = "µs, median per stage; median of runs"
    results: dict[str, dict[str, float]] = {}
    for service in ("echo", "frames"):
        runs = []
        for _ in range(args.runs):
            stamps = Stamps()
            instrument_once(stamps)
            runs.append(one_run(service, args.n, max(args.size, 16), stamps))
        results[service] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"one {max(args.size, 16)}-byte message at a time, Python client over the bridge "
          f"({stamps_note}):")
    print(f"{'stage':<12} {'lines':>10} {'frames':>10}")
    for stage in (*STAGES, "round trip"):
        print(f"{stage:<12} {results['echo'][stage]:>10.0f} {results['frames'][stage]:>10.0f}")
    for service in ("echo", "frames"):
        rate = 1e6 / results[service]["round trip"]
        print(f"{service}: {rate:,.0f} round trips/s, {rate * max(args.size, 16) / 1e6:,.1f} MB/s")
    print(json.dumps(results))


_CURRENT: list[Stamps] = []


def instrument_once(stamps: Stamps) -> None:
    """Point the wrappers (installed once) at this run's stamps."""
    if not _CURRENT:
        proxy = Stamps()
        proxy.stamp = lambda where, key: _CURRENT[-1].stamp(where, key)  # type: ignore[method-assign]
        instrument(proxy)
    _CURRENT.append(stamps)


if __name__ == "__main__":
    main()

"""Page input through the bridge: straight into the service's stdin pipe when nothing waits
before it, else through the worker's writer thread, in order either way, credits exact.

A raw authenticated WebSocket client (launch URL -> cookie + socket key, the app's Origin) plays
the page, so the records, frames and credits are exactly the ones under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from bridge_client import launch
from browser import ServedApp, served_app
from projects import write_project

from wvwasi.runtime.bridge.protocol import HEADER, U32, WINDOW, Op, iter_records, json_record
from wvwasi.runtime.bridge.protocol import record as make_record

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path],
    module_cache_dir: Path,
) -> Iterator[ServedApp]:
    root = write_project(tmp_path_factory.mktemp("input") / "app", {
        "frames": {"source": "echo_frames", "kind": "dedicated", "ipc": "frames"},
        "lines": {"source": "echo_lines", "kind": "dedicated"},
    }, resolve_wasm=wasm_fixture)
    with served_app(root, dirs=tmp_path_factory.mktemp("dirs"), cache=module_cache_dir) as a:
        yield a


async def echo_all(
    app: ServedApp, service: str, batches: list[list[bytes]], settle: int = 0
) -> list[bytes]:
    """Send each batch of messages in one frame (waiting for input credit so as to stay in the
    window, crediting output as it comes; every `settle`-th batch also waits for all echoes so
    far, so the next input finds the pipe empty); return every echoed message, in order."""
    creds = launch(app)
    url, headers = creds.ws_url(), creds.headers()
    total = sum(map(len, batches))
    got: list[bytes] = []
    in_flight = 0
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        await ws.send_bytes(json_record(Op.SPAWN, 1, {"service": service}))

        async def receive() -> None:
            nonlocal in_flight
            msg = await asyncio.wait_for(ws.receive(), 30)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            owed = 0
            for op, _, payload in iter_records(msg.data):
                if op is Op.CREDIT:
                    in_flight -= U32.unpack(payload)[0]
                elif op is Op.MESSAGE:
                    got.append(bytes(payload))
                    owed += HEADER.size + len(payload)
                else:
                    raise AssertionError(f"unexpected {op.name}: {bytes(payload)[:200]!r}")
            if owed:
                await ws.send_bytes(make_record(Op.CREDIT, 1, U32.pack(owed)))

        sent = 0
        for n, batch in enumerate(batches):
            if settle and n % settle == 0:
                while len(got) < sent:
                    await receive()
            sent += len(batch)
            cost = sum(HEADER.size + len(m) for m in batch)
            while in_flight and in_flight + cost > WINDOW:
                await receive()
            in_flight += cost
            await ws.send_bytes(b"".join(make_record(Op.SEND, 1, m) for m in batch))
        while len(got) < total or in_flight:
            await receive()
    return got


def test_small_and_large_input_keeps_its_order_and_credits(app: ServedApp) -> None:
    """Large records overflow the stdin pipe (the rest waits for the writer thread); small
    ones sent meanwhile must not overtake them, and every input byte is credited back."""
    batches: list[list[bytes]] = []
    sent: list[bytes] = []
    for i in range(24):
        if i % 4 == 1:
            batch = [bytes([i]) * (900_000 + i)]  # alone in its frame: most of the window
        else:
            batch = [f"small {i}.{j}".encode() for j in range(1 + i % 3)]
        batches.append(batch)
        sent += batch
    got = asyncio.run(echo_all(app, "frames", batches, settle=3))
    assert [len(m) for m in got] == [len(m) for m in sent]
    assert got == sent


def test_many_small_lines_in_one_frame_keep_order(app: ServedApp) -> None:
    sent = [f"line {i} ✓".encode() for i in range(2000)]
    got = asyncio.run(echo_all(app, "lines", [sent[i:i + 100] for i in range(0, 2000, 100)]))
    assert got == sent

"""Issue 23, finding 2: a page that never reads its socket cannot grow the bridge without bound.

A raw client (bridge_client.RawPage) opens a real page connection and never reads after the
handshake. It asks for output the bridge must send: tasks that print 15 MiB each (RESULT
records), or 512 KiB host-folder reads (FS_REPLY records). Before the fix every result was queued
for the page: RSS went 50 MB -> 3.1 GB in 13 s. Now the page's outbox stops at flow.OUTBOX_BYTES,
finished runs keep their results in their instance slots (`instances_per_page` = 4 here), the
page's socket is not read meanwhile, and a page stalled for flow.STALL_TIMEOUT (2 s here) is
closed and everything it started ends, so its memory returns (bridge/memory.py).
"""

from __future__ import annotations

import asyncio
import gc
import json
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bridge_client import PageClient, RawPage, launch, rss_bytes, run, spawn
from browser import ServedApp, served_app
from projects import write_project

from wvwasi.runtime.bridge import flow
from wvwasi.runtime.bridge.hostfs import MAX_IO
from wvwasi.runtime.bridge.protocol import OUTPUT_PIECE, Op, json_record, record, split_json

pytestmark = pytest.mark.timeout(180)

SLOTS = 4
MIB = 1 << 20
#: What the bridge may grow by for one never-reading page here: the outbox bound, the results
#: held in its SLOTS instance slots (15 MiB each, plus the copies made while one is encoded),
#: one frame in the socket's buffer, and allocator slack. Measured +165 MiB; before: gigabytes.
GROWTH_BOUND = 300 * MIB
#: What may stay once the page has gone (bridge/memory.py: buffers of 4 MiB or more are unmapped
#: when freed; smaller ones stay for reuse). Measured +5 to +27 MiB; before that +30 to +100 MiB
#: per flooding page, growing.
RETURN_BOUND = 64 * MIB


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path],
        module_cache_dir: Path) -> Iterator[ServedApp]:
    base = tmp_path_factory.mktemp("outbox")
    page = {"preopens": [{"guest": "/data", "host": "$APPDATA/data", "mode": "ro"}]}
    root = write_project(
        base / "app", {
            "flood": {"source": "flood", "kind": "task", "args": ["15"]},
            # copies a 15 MiB file into an output file: 15 MiB of OUTPUT records at its exit
            "copy": {"source": "copyfile", "kind": "task", "args": ["/data/15m", "/out/r"],
                     "preopens": [{"guest": "/data", "host": "$APPDATA/data", "mode": "ro"}]},
        },
        resolve_wasm=wasm_fixture,
        extra={"page": page, "limits": {"instances_per_page": SLOTS}},
    )
    with served_app(root, dirs=base / "dirs", cache=module_cache_dir) as served:
        data = served.bridge.host.paths.resolve("$APPDATA/data")
        data.mkdir(parents=True, exist_ok=True)
        (data / "big").write_bytes(b"x" * MAX_IO)
        (data / "15m").write_bytes(b"y" * (15 * MIB))
        served.spy.run_task("flood")  # compiled and run once: the baselines are warm
        served.spy.instances.clear()
        yield served


@pytest.fixture(autouse=True)
def short_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flow, "STALL_TIMEOUT", 2.0)


def fs_call(ident: int, head: dict) -> bytes:
    raw = json.dumps(head).encode()
    return record(Op.FS_CALL, ident, struct.pack("<I", len(raw)) + raw)


def settle(app: ServedApp, seconds: float) -> int:
    """Wait until the page's session has gone and no instance runs (at most `seconds`), and
    then RSS."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and (app.bridge._sessions or alive(app)):
        app.spy.instances.clear()
        time.sleep(0.1)
    app.spy.instances.clear()
    gc.collect()
    return rss_bytes()


def alive(app: ServedApp) -> bool:
    return bool(app.spy.host._live)


def watch(app: ServedApp, seconds: float, feed: Callable[[], bool]) -> int:
    """Call `feed()` every 50 ms for `seconds` (until it returns False) while sampling RSS;
    the peak. The test's own references to instances (SpyHost's) are dropped as it goes, as
    nothing else keeps an ended instance."""
    peak = rss_bytes()
    end = time.monotonic() + seconds
    while time.monotonic() < end and feed():
        peak = max(peak, rss_bytes())
        app.spy.instances.clear()
        time.sleep(0.05)
    while time.monotonic() < end:
        peak = max(peak, rss_bytes())
        app.spy.instances.clear()
        time.sleep(0.05)
    return peak


def never_reading(app: ServedApp, what: str,
                  start: Callable[[RawPage], Callable[[], bool]]) -> int:
    """A page that never reads: `start(page)` asks for output and returns what to call every
    50 ms for 12 s. Its memory stays bounded, it is closed as stalled and its memory returns."""
    base = settle(app, 10)
    page = RawPage(launch(app))
    try:
        peak = watch(app, 12, start(page))
        stalled = not app.bridge._sessions
    finally:
        page.close()
    after = settle(app, 10)
    print(f"\n{what}: RSS {base / MIB:.0f} MiB -> peak {peak / MIB:.0f} MiB, "
          f"{after / MIB:.0f} MiB after the page was closed (shared 2-core machine)")
    assert peak - base < GROWTH_BOUND
    assert stalled, "the stalled page was not closed"
    assert after - base < RETURN_BOUND
    return peak - base


def test_task_results_for_a_page_that_never_reads_stay_bounded(app: ServedApp) -> None:
    def start(page: RawPage) -> Callable[[], bool]:
        # 60 tasks x 15 MiB: 900 MiB of results; SLOTS run, the rest wait in the run queue
        assert page.send(*(run(i, "flood") for i in range(1, 61)))
        return lambda: True

    never_reading(app, "60 RUNs of 15 MiB", start)
    assert not alive(app)  # its instances ended


def test_folder_reads_for_a_page_that_never_reads_stay_bounded(app: ServedApp) -> None:
    mounts = range(1, 17)

    def start(page: RawPage) -> Callable[[], bool]:
        assert page.send(*(json_record(Op.MOUNT, i, {"preopen": "/data"}) for i in mounts))
        time.sleep(0.5)
        assert page.send(*(fs_call(i, {"op": "open", "h": 0, "path": "big"}) for i in mounts))
        time.sleep(0.5)
        # one 512 KiB read per mount every 50 ms (each answered long before the next)
        read = b"".join(fs_call(i, {"op": "read", "h": 1, "len": MAX_IO, "at": 0})
                        for i in mounts)
        return lambda: page.send(read)

    never_reading(app, "512 KiB folder reads", start)
    assert not app.bridge._folders  # its mounts were closed


def test_output_files_for_a_page_that_never_reads_wait_for_its_outbox(app: ServedApp) -> None:
    """Spawn `outputs` (OUTPUT records) respect the outbox bound like any output: a worker's or
    task's files go to the outbox a piece at a time while it is within OUTBOX_BYTES, the rest
    waits in its slot. Before: each exit queued all its 15 MiB at once (outbox peak 56 MiB here,
    RSS +185 MiB; now 16 MiB, +104 MiB)."""
    queued = [0]

    def start(page: RawPage) -> Callable[[], bool]:
        ids = iter(range(1, 1 << 20))

        def feed() -> bool:
            for session in list(app.bridge._sessions):
                queued[0] = max(queued[0], session._outbox._size)
            # one RUN (queued) and one SPAWN (refused while the SLOTS are taken) every 50 ms
            return page.send(run(next(ids), "copy", outputs=["/out/r"]),
                             spawn(next(ids), "copy", outputs=["/out/r"])) or True
        return feed

    growth = never_reading(app, "15 MiB output files", start)
    print(f"outbox peak {queued[0] / MIB:.1f} MiB (bound {flow.OUTBOX_BYTES / MIB:.0f} MiB)")
    assert flow.OUTBOX_BYTES < queued[0] <= flow.OUTBOX_BYTES + OUTPUT_PIECE + 4096
    assert growth < GROWTH_BOUND
    assert not alive(app)


def test_a_slow_reader_over_the_bound_gets_every_result(app: ServedApp) -> None:
    """The other side of the bound: a page that reads, slowly (a frame every 0.1 s), while more
    than OUTBOX_BYTES wait for it, is not taken for stalled; every result arrives whole."""
    async def scenario() -> list[int]:
        async with await PageClient.open(launch(app)) as page:
            await page.send(*(run(i, "flood") for i in range(1, 11)))
            sizes = []
            for i in range(1, 11):
                found = await page.answer(i, (Op.RESULT,), timeout=60)
                assert found is not None, f"closed before result {i}"
                sizes.append(split_json(memoryview(found[1]))[0]["stdoutLength"])
                await asyncio.sleep(0.5)  # the bridge stays over its bound meanwhile
            assert page.close_code is None
            return sizes

    assert asyncio.run(scenario()) == [15 * MIB] * 10

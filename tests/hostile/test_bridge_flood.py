"""Item 5 of issue 7 (bridge side): floods from one page are bounded and do not starve others.

A page may have at most `[limits] instances_per_page` workers and tasks (8 here); more are
refused with ERROR kind "limit". Its spawns and runs start at most session.STARTS_PER_PAGE at a
time on the bridge's shared pool, so threads stay within pool + instances, and an honest page
keeps getting answers during the flood. A page that leaves ends everything it started, also
what was still starting. Bounds are asserted as mechanisms (counts), latency is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from bridge_client import (
    SERVICES,
    PageClient,
    fd_count,
    launch,
    launch_with,
    rss_bytes,
    run,
    send,
    spawn,
    thread_count,
)
from browser import ServedApp, served_app
from projects import write_project

from wvwasi.runtime.bridge.protocol import Op
from wvwasi.runtime.bridge.runs import RUN_QUEUE
from wvwasi.runtime.bridge.server import MAX_PAGES, POOL_SIZE

pytestmark = pytest.mark.timeout(300)

CAP = 8
#: Threads one live instance may use: its own, stdin pump, stdout and stderr readers, and the
#: bridge's writer thread of its worker.
THREADS_PER_INSTANCE = 5


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path]) -> Path:
    base = tmp_path_factory.mktemp("flood")
    return write_project(base / "app", SERVICES, resolve_wasm=wasm_fixture,
                         extra={"limits": {"instances_per_page": CAP}})


@pytest.fixture(scope="module")
def app(
    project: Path, tmp_path_factory: pytest.TempPathFactory, module_cache_dir: Path
) -> Iterator[ServedApp]:
    dirs = tmp_path_factory.mktemp("flood-dirs")
    with served_app(project, dirs=dirs, cache=module_cache_dir, copy_pages=False) as a:
        yield a


class Sampler:
    """Samples this process's thread count, fds and RSS every 10 ms while running."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.fds: list[int] = []
        self.rss: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.threads.append(thread_count())
            self.fds.append(fd_count())
            self.rss.append(rss_bytes())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def honest_round_trips(app: ServedApp, stop: asyncio.Event) -> list[float]:
    """An honest page: one echo worker, one message at a time until `stop`; round trips (s)."""
    times: list[float] = []
    async with await PageClient.open(launch(app)) as page:
        await page.send(spawn(1, "echo"))
        n = 0
        while not stop.is_set() or n < 3:
            n += 1
            text = f"ping {n}".encode()
            start = time.perf_counter()
            await page.send(send(1, text))
            while True:
                got = await page.wait_for(Op.MESSAGE, 1, timeout=30)
                assert got is not None, "the honest page was closed"
                page.records = [r for r in page.records if r[0] is not Op.MESSAGE]
                if got == text:
                    break
            times.append(time.perf_counter() - start)
            await asyncio.sleep(0.005)
    return times


def settle(baseline: int, count: Callable[[], int], slack: int, timeout: float = 15) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end and count() > baseline + slack:
        time.sleep(0.05)
    return count()


def report(name: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(f"\n{name}: honest echo round trip median {statistics.median(ms):.1f} ms, "
          f"p95 {p95:.1f} ms, max {ms[-1]:.1f} ms over {len(ms)} (2 shared cores, noisy)")


def warm_up(app: ServedApp) -> None:
    """Load every module the tests use and let the background service open its pipes, so
    that what is left after a flood can be compared with what was there before."""

    async def once() -> None:
        async with await PageClient.open(launch(app)) as page:
            await page.send(spawn(1, "blockread"), spawn(2, "loop"), spawn(3, "hub"),
                            send(3, b"hi"), run(4, "wc"))
            for ident, op in ((1, Op.MESSAGE), (2, Op.MESSAGE), (3, Op.MESSAGE), (4, Op.RESULT)):
                assert await page.wait_for(op, ident) is not None

    asyncio.run(once())
    time.sleep(0.5)


def test_a_spawn_flood_is_capped_and_honest_pages_keep_working(app: ServedApp) -> None:
    warm_up(app)
    threads0, fds0 = thread_count(), fd_count()
    first = len(app.spy.instances)

    async def scenario() -> tuple[list[tuple[Op, int, bytes]], list[float]]:
        stop = asyncio.Event()
        honest = asyncio.create_task(honest_round_trips(app, stop))
        async with await PageClient.open(launch(app)) as flood:
            ident = 0
            for _ in range(20):  # 2,000 SPAWNs, 100 per frame
                frame = []
                for _ in range(100):
                    ident += 1
                    frame.append(spawn(ident, "blockread"))
                await flood.send(*frame)
            # every SPAWN is answered: a start ("waiting") or a refusal
            for i in range(1, ident + 1):
                assert await flood.answer(i, (Op.MESSAGE, Op.ERROR), timeout=60) is not None
            stop.set()
            times = await honest
            records = flood.records
        return records, times

    with Sampler() as sampled:
        records, times = asyncio.run(scenario())
    started = {i for op, i, _ in records if op is Op.MESSAGE}
    refusals = [json.loads(p[4:])["kind"] for op, _, p in records if op is Op.ERROR]
    assert len(started) == CAP
    assert refusals == ["limit"] * (2000 - CAP)
    bound = threads0 + POOL_SIZE + (CAP + 1) * THREADS_PER_INSTANCE + 4
    assert max(sampled.threads) <= bound, (max(sampled.threads), bound)
    report("spawn flood (2,000 SPAWNs, cap 8)", times)
    print(f"threads {threads0} -> max {max(sampled.threads)} (bound {bound}), fds {fds0} -> "
          f"max {max(sampled.fds)}, RSS max {max(sampled.rss) >> 20} MiB")
    for inst in app.spy.instances[first:]:  # the flooding page has gone: all ended
        assert inst.wait(10) is not None
    # Back to where it was, but for the pool's idle threads (kept for the next starts).
    assert settle(threads0, thread_count, POOL_SIZE) <= threads0 + POOL_SIZE
    assert settle(fds0, fd_count, 2) <= fds0 + 2


def test_runs_past_the_cap_wait_their_turn(app: ServedApp) -> None:
    """200 runs at once (an honest `Promise.all`): 8 run at a time, the others queue, all run."""

    async def scenario() -> list[tuple[Op, int, bytes]]:
        async with await PageClient.open(launch(app)) as page:
            await page.send(*(run(i, "wc", b"a b c") for i in range(1, 201)))
            for i in range(1, 201):
                assert await page.answer(i, (Op.RESULT, Op.ERROR), timeout=120) is not None
            return page.records

    records = asyncio.run(scenario())
    results = [p for op, _, p in records if op is Op.RESULT]
    assert len(results) == 200
    assert all(p.endswith(b"0 3 5\n") for p in results)


def test_a_run_flood_is_answered_with_back_pressure(app: ServedApp) -> None:
    threads0 = thread_count()
    total = 1500

    async def scenario() -> tuple[list[tuple[Op, int, bytes]], list[float]]:
        stop = asyncio.Event()
        honest = asyncio.create_task(honest_round_trips(app, stop))
        async with await PageClient.open(launch(app)) as flood:
            await flood.send(*(run(i, "wc", b"a b c") for i in range(1, total + 1)))
            for i in range(1, total + 1):
                assert await flood.answer(i, (Op.RESULT, Op.ERROR), timeout=120) is not None
            stop.set()
            times = await honest
            return flood.records, times

    with Sampler() as sampled:
        records, times = asyncio.run(scenario())
    results = [p for op, _, p in records if op is Op.RESULT]
    errors = [json.loads(p[4:])["kind"] for op, _, p in records if op is Op.ERROR]
    assert len(results) + len(errors) == total
    assert set(errors) <= {"limit"}
    assert len(results) >= RUN_QUEUE + CAP  # the queue was full before any was refused
    assert all(p.endswith(b"0 3 5\n") for p in results)
    bound = threads0 + POOL_SIZE + (CAP + 1) * THREADS_PER_INSTANCE + 4
    assert max(sampled.threads) <= bound, (max(sampled.threads), bound)
    report(f"run flood ({total} RUNs, cap 8: {len(results)} ran, {len(errors)} refused)", times)


def test_a_page_that_leaves_ends_what_it_was_still_starting(app: ServedApp) -> None:
    first, calls = len(app.spy.instances), len(app.spy.calls)

    async def scenario() -> None:
        page = await PageClient.open(launch(app))
        await page.send(*(spawn(i, "loop") for i in range(1, CAP + 1)),
                        *(run(i, "loop") for i in range(CAP + 1, 2 * CAP + 1)))
        await page.close()  # at once: most are still starting

    asyncio.run(scenario())
    time.sleep(1.0)  # anything still queued would start by now
    started = app.spy.instances[first:]
    assert len(app.spy.calls) - calls == len(started) <= CAP
    for inst in started:
        exited = inst.wait(10)
        assert exited is not None, "an instance of the page that left is still running"
        assert exited.error is not None and exited.error.kind == "terminated"


def test_serve_stops_on_sigterm_during_a_flood(project: Path, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "wvwasi", "serve", str(project)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Serving"), line
        creds = launch_with(line.split(" at ", 1)[1].strip())

        async def flood() -> None:
            pages = [await PageClient.open(creds) for _ in range(4)]
            ident = 0
            try:
                for _ in range(10):
                    for page in pages:
                        await page.send(*(spawn(ident + k, "loop") for k in range(1, 101)),
                                        *(run(ident + k, "wc") for k in range(101, 201)))
                    ident += 200
                    await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
            finally:
                for page in pages:
                    with contextlib.suppress(Exception):  # the server may be gone already
                        await page.close()

        asyncio.run(flood())
        start = time.monotonic()
        out, err = proc.communicate(timeout=60)
        print(f"\nwvwasi serve stopped {time.monotonic() - start:.1f} s after SIGTERM + 0.5 s "
              "under a flood of 4 pages")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.strip().endswith("Stopped.")


def test_page_connections_are_bounded(app: ServedApp) -> None:
    creds = launch(app)

    async def scenario() -> int:
        pages = [await PageClient.open(creds) for _ in range(MAX_PAGES)]
        try:
            try:
                extra = await PageClient.open(creds)
            except aiohttp.WSServerHandshakeError as e:
                return e.status
            await extra.close()
            return 101
        finally:
            for page in pages:
                await page.close()

    assert asyncio.run(scenario()) == 503

    async def after() -> bytes | None:  # the slots are free again once those pages left
        async with await PageClient.open(creds) as page:
            await page.send(spawn(1, "echo"), send(1, b"back"))
            return await page.wait_for(Op.MESSAGE, 1)

    assert asyncio.run(after()) == b"back"

"""An honest page's latency while another page floods the bridge (issue 7, item 5).

    .venv/bin/python bench/bench_bridge_flood.py [--seconds 5]

One process runs a real ServiceHost and Bridge (`[limits] instances_per_page` at its default,
32). An honest page (a plain aiohttp client speaking the bridge protocol) measures, one at a time,
an echo round trip on a live `lines` worker and `WasiWorker.run('wc')` round trips, first alone
(baseline), then while a second page floods: SPAWN flood (batches of 500 SPAWNs of a service
that blocks reading, the started ones terminated, repeated) and RUN flood (batches of 500 RUNs).
Prints medians/p95/max and threads; asserts nothing. 2 shared cores: figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "hostile")]

from bridge_client import SERVICES, PageClient, launch, run, send, spawn  # noqa: E402
from browser import served_app  # noqa: E402
from projects import write_project  # noqa: E402
from wasm import SOURCE_DIR, build_fixtures  # noqa: E402

from wvwasi.runtime.bridge.protocol import Op, record  # noqa: E402


async def honest(app, seconds: float) -> dict[str, list[float]]:
    echo: list[float] = []
    runs: list[float] = []
    async with await PageClient.open(launch(app)) as page:
        await page.send(spawn(1, "echo"))
        ident, n = 1, 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            n += 1
            text = f"ping {n}".encode()
            t0 = time.perf_counter()
            await page.send(send(1, text))
            assert await page.wait_for(Op.MESSAGE, 1, timeout=60) == text
            echo.append(time.perf_counter() - t0)
            page.records.clear()
            ident += 1
            t0 = time.perf_counter()
            await page.send(run(ident, "wc", b"a b"))
            assert await page.answer(ident, (Op.RESULT,), timeout=60) is not None
            runs.append(time.perf_counter() - t0)
            page.records.clear()
    return {"echo": echo, "run": runs}


async def flood(app, kind: str, stop: asyncio.Event, counts: dict[str, int]) -> None:
    async with await PageClient.open(launch(app)) as page:
        ident = 0
        while not stop.is_set():
            first = ident + 1
            ident += 500
            if kind == "spawn":
                await page.send(*(spawn(i, "blockread") for i in range(first, ident + 1)))
            else:
                await page.send(*(run(i, "wc", b"x") for i in range(first, ident + 1)))
            for i in range(first, ident + 1):
                found = await page.answer(i, (Op.MESSAGE, Op.ERROR, Op.RESULT), timeout=120)
                assert found is not None
                counts[found[0].name] = counts.get(found[0].name, 0) + 1
                if found[0] is Op.MESSAGE:
                    await page.send(record(Op.TERMINATE, i))
            page.records.clear()


def figures(name: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return (f"{name:34} median {statistics.median(ms):7.2f} ms  p95 {p95:7.2f} ms  "
            f"max {ms[-1]:7.2f} ms  (n={len(ms)})")


async def scenario(app, kind: str | None, seconds: float) -> None:
    stop = asyncio.Event()
    counts: dict[str, int] = {}
    peak = [threading.active_count()]
    flooder = asyncio.create_task(flood(app, kind, stop, counts)) if kind else None

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], threading.active_count())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if kind:
        await asyncio.sleep(0.5)  # let the flood get going
    result = await honest(app, seconds)
    stop.set()
    if flooder:
        await flooder
    label = f"during a {kind} flood" if kind else "alone (baseline)"
    print(f"\nhonest page {label}; flood answers {counts or '-'}; peak threads {peak[0]}")
    print(figures("  echo round trip (live worker)", result["echo"]))
    print(figures("  WasiWorker.run('wc') round trip", result["run"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    wasm = build_fixtures([SOURCE_DIR / f"{n}.c" for n in ("echo_lines", "blockread", "loop",
                                                           "wc")])
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = write_project(base / "app", SERVICES, resolve_wasm=wasm.__getitem__)
        with served_app(root, dirs=base / "dirs", cache=base / "cache", copy_pages=False) as app:
            for kind in (None, "spawn", "run"):
                asyncio.run(scenario(app, kind, args.seconds))


if __name__ == "__main__":
    main()

"""Item 4 of issue 7: a page cannot make the bridge buffer its input or output without bound.

A page that sends past its input window (1 MiB unacknowledged per worker), or returns CREDIT
for output it was never sent, breaks the protocol: the bridge closes it with 1008 and its
workers end. Real services: `loop` never reads its stdin, `echo` answers every line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bridge_client import (
    PageClient,
    credit,
    launch,
    rss_bytes,
    send,
    served_services,
    spawn,
)
from browser import ServedApp

from wvwasi.runtime.bridge.protocol import HEADER, WINDOW, Op, record

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path],
    module_cache_dir: Path,
) -> Iterator[ServedApp]:
    with served_services(tmp_path_factory.mktemp("credit"), wasm_fixture, module_cache_dir) as a:
        yield a


def ended_terminated(app: ServedApp, first: int) -> None:
    for inst in app.spy.instances[first:]:
        exited = inst.wait(10)
        assert exited is not None, "an instance of the closed page is still running"
        assert exited.error is not None and exited.error.kind == "terminated"


def test_sending_past_the_input_window_closes_1008_and_ends_the_workers(app: ServedApp) -> None:
    """The page ignores CREDIT and keeps posting to a service that never reads its stdin."""
    first = len(app.spy.instances)
    chunk = b"x" * (256 << 10)
    rss_before = rss_bytes()

    async def scenario() -> tuple[int | None, int]:
        page = await PageClient.open(launch(app))
        await page.send(spawn(1, "loop"))
        assert await page.wait_for(Op.MESSAGE, 1) == b"spinning"
        closed = asyncio.create_task(page.until_closed(60))
        sent = 0
        try:
            while sent < (256 << 20) and not closed.done():  # 256 MiB if nothing stops it
                await page.send(send(1, chunk))
                sent += len(chunk)
                await asyncio.sleep(0)
        except (ConnectionError, RuntimeError):
            pass
        code = await closed
        await page.close()
        return code, sent

    code, sent = asyncio.run(scenario())
    assert code == 1008
    # What the bridge took before closing: its window plus what the host's stdin buffer and the
    # pipe hold (16 MiB + 1 MiB) plus socket buffers, far from the 256 MiB the page tried.
    assert sent < 64 << 20, sent
    ended_terminated(app, first)
    assert rss_bytes() - rss_before < 128 << 20


@pytest.mark.parametrize("amount", [0xFFFFFFFF, 1], ids=["huge", "one byte too many"])
def test_credit_for_output_never_sent_closes_1008(app: ServedApp, amount: int) -> None:
    first = len(app.spy.instances)

    async def scenario() -> int | None:
        page = await PageClient.open(launch(app))
        await page.send(spawn(1, "echo"), send(1, b"hello"))
        message = await page.wait_for(Op.MESSAGE, 1)
        assert message == b"hello"
        owed = len(message) + HEADER.size  # what the page may credit back
        await page.send(credit(1, owed + (amount if amount == 1 else 0)))
        if amount != 1:
            for _ in range(50):  # the fake credit every 2 ms of the issue
                await page.send(credit(1, amount))
                await asyncio.sleep(0.002)
        code = await page.until_closed()
        await page.close()
        return code

    assert asyncio.run(scenario()) == 1008
    ended_terminated(app, first)


def test_an_honest_page_at_the_window_is_not_cut_off(app: ServedApp) -> None:
    """Exactly WINDOW bytes in flight, then one big record alone: both are allowed."""
    big = b"y" * (3 * WINDOW)

    async def scenario() -> list[bytes]:
        page = await PageClient.open(launch(app))
        half = b"a" * (WINDOW // 2 - HEADER.size)
        await page.send(spawn(1, "blockread"), send(1, half), send(1, half))
        got = [await page.wait_for(Op.MESSAGE, 1) or b""]
        # wait until the bridge has credited both halves back
        def returned() -> int:
            return sum(int.from_bytes(p, "little") for op, i, p in page.records
                       if op is Op.CREDIT and i == 1)

        while returned() < WINDOW:
            assert await page.receive()
        await page.send(send(1, big))  # one record over the window, nothing in flight
        await page.send(record(Op.CLOSE_STDIN, 1))
        exit_json = await page.wait_for(Op.EXIT, 1)
        got.append(exit_json or b"")
        await page.close()
        assert page.close_code is None
        return got

    waiting, exited = asyncio.run(scenario())
    assert waiting == b"waiting"
    assert b'"code":0' in exited

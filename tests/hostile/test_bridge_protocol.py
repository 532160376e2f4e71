"""Items 11 and 13 of issue 7: hostile JSON and protocol misuse close one connection cleanly.

Each case is sent by a plain client over a real bridge; the bridge must close that connection
with 1002/1003 (never 1011, never a dropped socket), log no traceback, and keep serving other
pages. Plus the protocol rules docs/architecture.md states: ids never reused, PICK not on id 0,
TERMINATE of a starting RUN answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bridge_client import PageClient, launch, run, send, served_services, spawn
from browser import ServedApp

from wvwasi.runtime.bridge.protocol import U32, Op, json_record, record

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path],
    module_cache_dir: Path,
) -> Iterator[ServedApp]:
    with served_services(tmp_path_factory.mktemp("protocol"), wasm_fixture, module_cache_dir) as a:
        yield a


def raw_json(op: Op, ident: int, text: bytes, rest: bytes = b"") -> bytes:
    return record(op, ident, U32.pack(len(text)) + text + rest)


HOSTILE: dict[str, bytes] = {
    "JSON nested 200k deep": raw_json(Op.SPAWN, 1, b"[" * 200_000 + b"]" * 200_000),
    "object nested 200k deep": raw_json(Op.RUN, 1, b'{"a":' * 200_000 + b"1" + b"}" * 200_000),
    "5,000-digit integer": raw_json(Op.SPAWN, 1, b'{"service":"echo","x":' + b"9" * 5000 + b"}"),
    "5,000-digit stdin size": raw_json(Op.RUN, 1, b'{"service":"wc","stdin":' + b"9" * 5000
                                       + b"}"),
    "files as int": json_record(Op.SPAWN, 1, {"service": "echo", "files": 3}),
    "files as null": json_record(Op.SPAWN, 1, {"service": "echo", "files": None}),
    "files as object": json_record(Op.SPAWN, 1, {"service": "echo", "files": {"/a": 1}}),
    "file size as bool": json_record(Op.SPAWN, 1, {"service": "echo", "files": [["/in/a", True]]},
                                     b"x"),
    "file size as float": json_record(Op.SPAWN, 1, {"service": "echo", "files": [["/in/a", 1.0]]},
                                      b"x"),
    "args as string": json_record(Op.SPAWN, 1, {"service": "echo", "args": "-x"}),
    "args with a lone surrogate": raw_json(Op.SPAWN, 1, b'{"service":"echo","args":["\\ud800"]}'),
    "env as object": json_record(Op.SPAWN, 1, {"service": "echo", "env": {"A": "1"}}),
    "env pair of three": json_record(Op.SPAWN, 1, {"service": "echo", "env": [["A", "1", "2"]]}),
    "scratch as int": json_record(Op.SPAWN, 1, {"service": "echo", "scratch": 1}),
    "grants as object": json_record(Op.SPAWN, 1, {"service": "echo", "grants": {}}),
    "grant item as list": json_record(Op.SPAWN, 1, {"service": "echo", "grants": [[1]]}),
    "service as list": json_record(Op.SPAWN, 1, {"service": ["echo"]}),
    "service as null": json_record(Op.RUN, 1, {"service": None}),
    "stdin as bool": json_record(Op.RUN, 1, {"service": "wc", "stdin": True}),
    "stdin negative": json_record(Op.RUN, 1, {"service": "wc", "stdin": -1}),
    "JSON is a list": json_record(Op.SPAWN, 1, ["echo"]),
    "JSON is a number": raw_json(Op.PICK, 1, b"1e999999"),
    "JSON with NaN": raw_json(Op.SPAWN, 1, b'{"service":NaN}'),
    "JSON not UTF-8": raw_json(Op.SPAWN, 1, b'{"service":"\xff"}'),
    "JSON over 1 MiB": raw_json(Op.SPAWN, 1, b'{"service":"echo","args":["' + b"a" * (1 << 20)
                                + b'"]}'),
    "JSON length past the record": record(Op.SPAWN, 1, U32.pack(10**9) + b"{}"),
    "PICK on id 0": json_record(Op.PICK, 0, {"mode": "ro"}),
    "SPAWN on id 0": json_record(Op.SPAWN, 0, {"service": "echo"}),
    "RUN on id 0": json_record(Op.RUN, 0, {"service": "wc", "stdin": 0}),
    "id reused after its worker ended": (
        json_record(Op.RUN, 5, {"service": "wc", "stdin": 0}) + b"WAIT"
        + json_record(Op.RUN, 5, {"service": "wc", "stdin": 0})
    ),
    "id lower than an earlier one": (
        json_record(Op.PICK, 9, {"mode": "ro"}) + json_record(Op.PICK, 8, {"mode": "ro"})
    ),
    "CREDIT of 2 bytes": spawn(1, "echo") + record(Op.CREDIT, 1, b"ab"),
    "op 255": record(Op.SEND, 1)[:4] + b"\xff" + record(Op.SEND, 1)[5:],
    "STDIN to a background service": spawn(1, "hub") + record(Op.STDIN, 1, b"x"),
    "lines message not UTF-8": spawn(1, "echo") + send(1, b"\xed\xa0\x80"),
}


class Tracebacks(logging.Handler):
    """Collects every log record that carries a traceback or is an error."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, rec: logging.LogRecord) -> None:
        if rec.exc_info or rec.levelno >= logging.ERROR:
            self.bad.append(self.format(rec))


@pytest.fixture
def tracebacks() -> Iterator[Tracebacks]:
    handler = Tracebacks()
    logging.getLogger("wvwasi").addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger("wvwasi").removeHandler(handler)


async def play(app: ServedApp, frames: bytes) -> tuple[int | None, list[tuple[Op, int, bytes]]]:
    """Send `frames` (b"WAIT" between two parts: wait for the first part's answer)."""
    async with await PageClient.open(launch(app)) as page:
        parts = frames.split(b"WAIT")
        for i, part in enumerate(parts):
            await page.send(part)
            if i < len(parts) - 1:
                await page.wait_for(Op.RESULT, 5)
        code = await page.until_closed()
    return code, page.records


async def echo_round_trip(app: ServedApp) -> bytes | None:
    async with await PageClient.open(launch(app)) as page:
        await page.send(spawn(1, "echo"), send(1, b"still here"))
        return await page.wait_for(Op.MESSAGE, 1)


@pytest.mark.parametrize("frames", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_records_close_cleanly(
    app: ServedApp, tracebacks: Tracebacks, frames: bytes
) -> None:
    first = len(app.spy.instances)
    code, _ = asyncio.run(play(app, frames))
    assert code in (1002, 1003)
    assert tracebacks.bad == []
    for inst in app.spy.instances[first:]:
        assert inst.wait(10) is not None
    assert asyncio.run(echo_round_trip(app)) == b"still here"


def test_terminate_during_a_starting_run_answers_it(app: ServedApp) -> None:
    """The RUN and its TERMINATE arrive in one frame, while the task is still starting."""

    async def scenario() -> tuple[Op, bytes] | None:
        async with await PageClient.open(launch(app)) as page:
            await page.send(run(1, "loop"), record(Op.TERMINATE, 1))
            return await page.answer(1, (Op.RESULT, Op.ERROR), timeout=10)

    answer = asyncio.run(scenario())
    assert answer is not None, "the connection closed"
    op, payload = answer
    head = json.loads(payload[4 : 4 + int.from_bytes(payload[:4], "little")])
    kind = head["error"]["kind"] if op is Op.RESULT else head["kind"]
    assert kind == "terminated"


def test_terminate_during_a_starting_spawn_ends_it(app: ServedApp) -> None:
    first = len(app.spy.instances)

    async def scenario() -> bytes | None:
        async with await PageClient.open(launch(app)) as page:
            await page.send(spawn(1, "loop"), record(Op.TERMINATE, 1))
            return await page.wait_for(Op.EXIT, 1, timeout=10)

    exited = asyncio.run(scenario())
    assert exited is not None and b'"terminated"' in exited
    for inst in app.spy.instances[first:]:
        assert inst.wait(10) is not None


def test_unknown_ids_and_ended_workers_are_ignored_not_fatal(app: ServedApp) -> None:
    """SEND/CREDIT/TERMINATE for an id with no worker (ended, or never started) are dropped."""

    async def scenario() -> tuple[bytes | None, int | None]:
        async with await PageClient.open(launch(app)) as page:
            await page.send(record(Op.SEND, 77, b"x"), record(Op.TERMINATE, 78),
                            record(Op.CLOSE_STDIN, 79), record(Op.CREDIT, 80, U32.pack(5)))
            await page.send(spawn(100, "echo"), send(100, b"ok"))
            return await page.wait_for(Op.MESSAGE, 100), page.close_code

    assert asyncio.run(scenario()) == (b"ok", None)

"""Property-based fuzzing of the bridge protocol against a real Bridge + ServiceHost.

Hypothesis builds frames of records (valid ops and ids mixed with junk: specs with values of any
JSON type, wrong lengths, unknown ops, text frames) and sends them from a plain client. Whatever
it sends, the bridge must either answer a final probe (so the connection is still healthy) or
close with 1002/1003/1008; it must never log a traceback, and every instance the connection
started must end once it is gone. Other pages keep working throughout.

CI runs 200 examples. A long run (any count, any seed):

    WVWASI_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/hostile/test_bridge_fuzz.py -q
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bridge_client import SERVICES, Credentials, PageClient, launch, send, spawn
from browser import ServedApp, served_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from projects import write_project

from wvwasi.runtime.bridge.protocol import HEADER, Op, json_record, record

pytestmark = pytest.mark.timeout(1800)

EXAMPLES = int(os.environ.get("WVWASI_FUZZ_EXAMPLES", "200"))
PROBE = 0xFFFFFFFF
#: Services the fuzzer may name (no spinning `loop`: its instances would only burn CPU).
NAMES = ["echo", "blockread", "wc", "hub", "nope", ""]
CLEAN_CLOSES = (1002, 1003, 1008)


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path],
    module_cache_dir: Path,
) -> Iterator[ServedApp]:
    base = tmp_path_factory.mktemp("fuzz")
    root = write_project(base / "app", SERVICES, resolve_wasm=wasm_fixture)
    with served_app(root, dirs=base / "dirs", cache=module_cache_dir, copy_pages=False) as a:
        yield a


# --- strategies ------------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=12), st.sampled_from(NAMES), st.sampled_from(["/in/a", "//ro", "/", "ro"]),
)
json_any = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4),
), max_leaves=12)

spec = st.fixed_dictionaries({}, optional={
    "service": st.one_of(st.sampled_from(NAMES), json_any),
    "args": st.one_of(st.lists(st.text(max_size=8), max_size=3), json_any),
    "env": st.one_of(st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)).map(list),
                              max_size=2), json_any),
    "files": st.one_of(st.lists(st.tuples(st.sampled_from(["/in/a", "/in/b", "/x"]),
                                          st.integers(0, 8)).map(list), max_size=2), json_any),
    "scratch": st.one_of(st.booleans(), json_any),
    "grants": st.one_of(st.just([]), json_any),
    "stdin": st.one_of(st.integers(-2, 10), json_any),
    "mode": st.one_of(st.sampled_from(["ro", "rw"]), json_any),
})

# Most choices are well-formed (weighted by repetition), so that records get past the framing
# and reach spawns, workers and runs; the rest is junk.
# A well-typed spec (what the page API sends), for examples without junk.
valid_spec = st.fixed_dictionaries({"service": st.sampled_from(NAMES)}, optional={
    "args": st.lists(st.text(max_size=8), max_size=3),
    "env": st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)).map(list), max_size=2),
    "files": st.lists(st.tuples(st.sampled_from(["/in/a", "/in/b", "//ro/x"]),
                                st.integers(0, 8)).map(list), max_size=2),
    "scratch": st.booleans(),
    "stdin": st.integers(0, 10),
    "mode": st.sampled_from(["ro", "rw"]),
})

ident = st.one_of(st.integers(1, 8), st.just(0), st.just(PROBE - 1), st.integers(0, 2**32 - 1))
PAGE_OPS = [Op.SPAWN, Op.SEND, Op.RUN, Op.CREDIT, Op.TERMINATE, Op.STDIN, Op.CLOSE_STDIN, Op.PICK]
ops = st.sampled_from(PAGE_OPS * 6 + list(Op) + [0, 9, 15, 23, 99, 255])
KINDS = {Op.SPAWN: "json", Op.RUN: "json", Op.PICK: "json", Op.CREDIT: "u32"}


@st.composite
def a_record(draw: st.DrawFn, ids: list[int], clean: bool) -> bytes:
    """One record; `ids` holds the ids given so far (new ones increase, as the page API's).
    `clean`: only well-formed records (the bridge's deeper states), else junk too."""
    op = draw(st.sampled_from(PAGE_OPS) if clean else ops)
    choice = "usual" if clean else draw(st.sampled_from(["usual"] * 5 + ["any"]))
    if choice == "usual" and op in (Op.SPAWN, Op.RUN, Op.PICK):
        rid = ids[-1] + 1
        ids.append(rid)
    elif choice == "usual":
        rid = draw(st.sampled_from(ids))
    else:
        rid = draw(ident)
    usual = KINDS.get(op, "bytes")  # type: ignore[call-overload]
    junk = ["json", "bytes", "u32", "empty"]
    kind = usual if clean else draw(st.sampled_from([usual] * 6 + junk))
    if kind == "json":
        body = json.dumps(draw(valid_spec if clean else spec)).encode()
        right = clean or draw(st.sampled_from([True] * 8 + [False]))
        length = len(body) if right else draw(st.integers(0, 2**32 - 1))
        payload = struct.pack("<I", length) + body + draw(st.binary(max_size=16))
    elif kind == "u32":
        top = 64 if clean else 2**32 - 1  # a small credit may still be more than was sent
        payload = struct.pack("<I", draw(st.integers(0, top)))
    elif kind == "bytes":
        payload = draw(st.one_of(st.binary(max_size=64), st.text(max_size=32).map(str.encode)))
    else:
        payload = b""
    rec = struct.pack("<IBI", len(payload), op, rid) + payload
    if not clean and draw(st.integers(0, 30)) == 30:  # a cut or overlong record, now and then
        rec = rec[: draw(st.integers(0, len(rec)))]
    return rec


@st.composite
def frames(draw: st.DrawFn) -> list[bytes | str]:
    ids = [0]
    clean = draw(st.booleans())
    recs = draw(st.lists(a_record(ids, clean), min_size=1, max_size=10))
    cuts = sorted(draw(st.sets(st.integers(1, len(recs)), max_size=2)) | {len(recs)})
    out: list[bytes | str] = []
    start = 0
    for end in cuts:
        out.append(b"".join(recs[start:end]))
        start = end
    if not clean and draw(st.integers(0, 40)) == 40:
        out.insert(draw(st.integers(0, len(out))), "a text frame")
    return out


# --- the property ----------------------------------------------------------------------------


class Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []
        self.closes: dict[str, int] = {}  # why the bridge closed connections

    def emit(self, rec: logging.LogRecord) -> None:
        if rec.exc_info or rec.levelno >= logging.ERROR:
            self.bad.append(self.format(rec))
        elif rec.msg == "closing a page connection: %s":
            why = str(rec.args[0]) if isinstance(rec.args, tuple) else ""
            self.closes[why[:28]] = self.closes.get(why[:28], 0) + 1


async def play(creds: Credentials, sent: list[bytes | str]) -> tuple[bool, int | None]:
    """(probe answered, close code)."""
    async with await PageClient.open(creds) as page:
        for frame in sent:
            if isinstance(frame, str):
                await page.ws.send_str(frame)
            else:
                await page.ws.send_bytes(frame)
        await page.ws.send_bytes(json_record(Op.PICK, PROBE, {"mode": "ro"}))
        answered = await page.answer(PROBE, (Op.ERROR,), timeout=30) is not None
        return answered, page.close_code


def test_the_bridge_survives_any_frames(app: ServedApp) -> None:
    creds = launch(app)
    tracebacks = Tracebacks()
    logging.getLogger("wvwasi").addHandler(tracebacks)
    outcomes: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(sent=frames())
    def prop(sent: list[bytes | str]) -> None:
        first = len(app.spy.instances)
        answered, code = asyncio.run(play(creds, sent))
        outcome = "answered" if answered else f"closed {code}"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert answered or code in CLEAN_CLOSES, (outcome, sent)
        assert tracebacks.bad == [], tracebacks.bad
        for inst in app.spy.instances[first:]:
            assert inst.wait(10) is not None, "an instance outlived its connection"

    try:
        prop()
    finally:
        logging.getLogger("wvwasi").removeHandler(tracebacks)
    print(f"\nbridge fuzz: {sum(outcomes.values())} cases: {outcomes}")
    print("closed because:", sorted(tracebacks.closes.items(), key=lambda kv: -kv[1])[:12])

    async def honest() -> Any:
        async with await PageClient.open(launch(app)) as page:
            await page.send(spawn(1, "echo"), send(1, b"after the fuzz"))
            return await page.wait_for(Op.MESSAGE, 1)

    assert asyncio.run(honest()) == b"after the fuzz"
    assert HEADER.size == 9 and record(Op.SEND, 1) == b"\0\0\0\0\x02\x01\0\0\0"

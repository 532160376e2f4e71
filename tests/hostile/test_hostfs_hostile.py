"""Host folders lent to page-supplied modules (MOUNT / FS_CALL records) against clients that are
not the app's page, or are and misbehave: no socket key (so no socket, so no mount), calls on ids
that are no mount, two calls in flight on one mount, oversized calls, mounts that would widen a
folder, raw calls that try to leave the folder, malformed calls and a handle flood; every mount
gone when the page leaves.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from bridge_client import PageClient, launch, send, spawn
from browser import ServedApp, served_app
from projects import write_project

from wvwasi.runtime.bridge.hostfs import MAX_HANDLES, MAX_IO
from wvwasi.runtime.bridge.mounts import HANDLES_PER_PAGE, MAX_CALL
from wvwasi.runtime.bridge.protocol import Op, json_record, record, split_json

pytestmark = pytest.mark.timeout(120)
EPERM, EMFILE, EINVAL = 63, 33, 28


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path],
        module_cache_dir: Path) -> Iterator[ServedApp]:
    base = tmp_path_factory.mktemp("hostile-hostfs")
    page = {"preopens": [{"guest": "/data", "host": "$APPDATA/data", "mode": "rw"},
                         {"guest": "/ro", "host": "$APPDATA/ro", "mode": "ro"}]}
    root = write_project(base / "app", {"echo": {"source": "echo_lines"}},
                         resolve_wasm=wasm_fixture, extra={"page": page})
    with served_app(root, dirs=base / "dirs", cache=module_cache_dir) as served:
        data = served.bridge.host.paths.resolve("$APPDATA/data")
        data.mkdir(parents=True, exist_ok=True)
        (data / "big").write_bytes(b"x" * (3 * MAX_IO))
        (data / "out").symlink_to("/etc")
        yield served


def fs_call(ident: int, head: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(head).encode()
    return record(Op.FS_CALL, ident, struct.pack("<I", len(raw)) + raw + data)


async def mount(page: PageClient, ident: int, **spec: object) -> tuple[Op, dict]:
    await page.send(json_record(Op.MOUNT, ident, spec))
    found = await page.answer(ident, (Op.MOUNTED, Op.ERROR))
    assert found is not None
    return found[0], split_json(memoryview(found[1]))[0]


async def call(page: PageClient, ident: int, head: dict, data: bytes = b"",
               raw: bytes | None = None) -> tuple[dict, bytes]:
    """Send one FS_CALL (`raw`: this record instead) and wait for its FS_REPLY."""
    seen = len(page.records)
    await page.send(raw if raw is not None else fs_call(ident, head, data))
    while True:
        for op, rid, payload in page.records[seen:]:
            if op is Op.FS_REPLY and rid == ident:
                (size,) = struct.unpack_from("<I", payload)
                return json.loads(payload[4:4 + size]), payload[4 + size:]
        seen = len(page.records)
        assert await page.receive(), "the bridge closed the connection"


async def gone(app: ServedApp) -> bool:
    for _ in range(100):
        if not app.bridge._folders:
            return True
        await asyncio.sleep(0.05)
    return False


def test_without_the_socket_key_there_is_no_socket_so_no_mount(app: ServedApp) -> None:
    creds = launch(app)

    async def scenario() -> None:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await PageClient.open(creds, key="not-the-key")
        assert refused.value.status == 403
        foreign = {"Cookie": creds.cookie, "Origin": "http://evil.example"}
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await PageClient.open(creds, headers=foreign)
        assert not app.bridge._folders

    asyncio.run(scenario())


def test_mounts_only_narrow_and_raw_calls_never_leave_the_folder(app: ServedApp) -> None:
    async def scenario() -> None:
        async with await PageClient.open(launch(app)) as page:
            assert (await mount(page, 1, preopen="/etc"))[1]["kind"] == "permission"
            assert (await mount(page, 2, grant="made-up"))[1]["kind"] == "permission"
            op, reply = await mount(page, 3, preopen="/ro", mode="rw")
            assert op is Op.ERROR and reply["kind"] == "permission"
            op, reply = await mount(page, 4, preopen="/data", mode="ro")
            assert op is Op.MOUNTED and reply == {"mode": "ro"}
            write = {"op": "open", "h": 0, "path": "new", "creat": True, "write": True}
            assert (await call(page, 4, write))[0]["errno"] == EPERM  # rw folder lent ro
            assert (await mount(page, 5, preopen="/data"))[0] is Op.MOUNTED
            for path in ("../../../../etc/passwd", "/etc/passwd", "out/passwd", "big/../../x"):
                for op_name in ("open", "pstat"):
                    head = {"op": op_name, "h": 0, "path": path, "follow": True}
                    assert (await call(page, 5, head))[0]["errno"] in (EPERM, 54), (path, head)
            for head in ({"op": "read"}, {"op": "open", "h": "0", "path": 1}, {"op": "nope"},
                         {"op": "close", "h": 0}, {"op": "open", "h": 0, "path": "a\u0000b"},
                         {"op": "rename", "h": 0, "path": "big", "h2": 99, "path2": "x"},
                         {"op": "symlink", "h": 0, "target": "/etc", "path": "abs"}):
                answer, _ = await call(page, 5, head)
                assert answer["errno"] != 0, head
            cut = record(Op.FS_CALL, 5, b"\xff\xff\xff\xff{")  # a head longer than the call
            assert (await call(page, 5, {}, raw=cut))[0]["errno"] != 0
            # a read returns at most MAX_IO bytes, whatever it asks for
            opened, _ = await call(page, 5, {"op": "open", "h": 0, "path": "big", "follow": True})
            answer, data = await call(page, 5, {"op": "read", "h": opened["h"], "len": 1 << 30})
            assert answer["errno"] == 0 and len(data) == MAX_IO
            # open handles are bounded per mount: EMFILE, never an fd leak
            codes = [(await call(page, 5, {"op": "open", "h": 0, "path": "big"}))[0]["errno"]
                     for _ in range(MAX_HANDLES + 5)]
            assert EMFILE in codes and codes.count(0) < MAX_HANDLES
            # calls on ids that are no mount are dropped; the page stays connected
            await page.send(fs_call(999, {"op": "pstat", "h": 0, "path": "big"}))
            answer, _ = await call(page, 5, {"op": "pstat", "h": 0, "path": "big"})
            assert answer["errno"] == 0 and answer["size"] == str(3 * MAX_IO)
        assert await gone(app)  # the page left: every mount and handle closed

    asyncio.run(scenario())


@pytest.mark.parametrize("abuse", ["two calls in flight", "oversized call"])
def test_a_page_over_the_call_bounds_is_disconnected(app: ServedApp, abuse: str) -> None:
    async def scenario() -> None:
        async with await PageClient.open(launch(app)) as page:
            assert (await mount(page, 1, preopen="/data"))[0] is Op.MOUNTED
            stat = fs_call(1, {"op": "pstat", "h": 0, "path": "big"})
            if abuse == "two calls in flight":
                await page.send(stat, stat)
            else:
                await page.send(fs_call(1, {"op": "write", "h": 0}, b"x" * MAX_CALL))
            assert await page.until_closed() == 1008
        assert await gone(app)

    asyncio.run(scenario())


def test_a_call_nested_too_deeply_is_answered(app: ServedApp,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Issue 23: 30,000 `[` as a call's JSON raised RecursionError on the file-call thread: no
    FS_REPLY (the module's Worker waited for ever) and a logged traceback."""
    async def scenario() -> None:
        async with await PageClient.open(launch(app)) as page:
            assert (await mount(page, 1, preopen="/data"))[0] is Op.MOUNTED
            deep = record(Op.FS_CALL, 1, struct.pack("<I", 30000) + b"[" * 30000)
            assert (await call(page, 1, {}, raw=deep))[0]["errno"] == EINVAL
            answer, _ = await call(page, 1, {"op": "pstat", "h": 0, "path": "big"})
            assert answer["errno"] == 0  # the mount and the page go on

    asyncio.run(scenario())
    assert not [r for r in caplog.records if r.exc_info]


def test_names_that_are_not_utf8_are_left_out_of_listings(app: ServedApp) -> None:
    """Issue 23: one such name made every readdir batch holding it fail with EINVAL."""
    odd = app.bridge.host.paths.resolve("$APPDATA/data") / "odd"
    odd.mkdir(exist_ok=True)
    (odd / "plain").write_bytes(b"")
    with open(os.fsencode(odd) + b"/bad\xff\xfe", "wb"):
        pass

    async def scenario() -> None:
        async with await PageClient.open(launch(app)) as page:
            assert (await mount(page, 1, preopen="/data"))[0] is Op.MOUNTED
            opened, _ = await call(page, 1, {"op": "open", "h": 0, "path": "odd",
                                             "directory": True})
            answer, _ = await call(page, 1, {"op": "readdir", "h": opened["h"], "cookie": 0})
            assert answer["errno"] == 0
            assert sorted(e[0] for e in answer["entries"]) == [".", "..", "plain"]

    asyncio.run(scenario())


def test_mount_roots_count_against_the_page_handle_budget(app: ServedApp) -> None:
    """Issue 23: a mount's root folder fds were outside every budget."""
    async def scenario() -> None:
        async with await PageClient.open(launch(app)) as page:
            mounts = range(1, HANDLES_PER_PAGE // MAX_HANDLES + 2)
            for i in mounts:
                assert (await mount(page, i, preopen="/data"))[0] is Op.MOUNTED
            opened = 0
            for i in mounts:
                while (await call(page, i, {"op": "open", "h": 0, "path": "big"}))[0][
                        "errno"] == 0:
                    opened += 1
            assert opened + len(mounts) == HANDLES_PER_PAGE

    asyncio.run(scenario())


def test_terminating_a_mount_during_a_slow_call_does_not_block_the_bridge(
    app: ServedApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23: TERMINATE of a mount waited on the bridge's loop for the call in progress
    (another page's echo went 0.9 -> 306 ms). The slow disk is simulated at one seam: a read of
    SLOW bytes waits until the test lets it go."""
    slow, release = 12345, threading.Event()
    pread = os.pread

    def slow_pread(fd: int, size: int, at: int) -> bytes:
        if size == slow:
            release.wait(30)
        return pread(fd, size, at)

    monkeypatch.setattr(os, "pread", slow_pread)

    async def scenario() -> float:
        async with await PageClient.open(launch(app)) as page, \
                await PageClient.open(launch(app)) as other:
            await other.send(spawn(1, "echo"), send(1, b"warm"))
            assert await other.wait_for(Op.MESSAGE, 1) == b"warm"
            assert (await mount(page, 1, preopen="/data"))[0] is Op.MOUNTED
            opened, _ = await call(page, 1, {"op": "open", "h": 0, "path": "big"})
            await page.send(fs_call(1, {"op": "read", "h": opened["h"], "len": slow, "at": 0}))
            await asyncio.sleep(0.3)  # the read waits on its file-call thread
            await page.send(record(Op.TERMINATE, 1))
            start = time.perf_counter()
            other.records.clear()
            await other.send(send(1, b"ping"))
            got = await other.wait_for(Op.MESSAGE, 1, timeout=10)
            took = time.perf_counter() - start
            release.set()
            assert got == b"ping"
            return took

    try:
        took = asyncio.run(scenario())
    finally:
        release.set()
    print(f"\nanother page's echo while a terminated mount's call ran: {took * 1000:.0f} ms")
    assert asyncio.run(gone(app))  # the mount's handles were closed once the call ended

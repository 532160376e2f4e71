"""The host folder endpoint of page-supplied modules (`POST /__wvwasi/fs/MOUNT`) against clients
that are not the app's page, or that are and misbehave: no cookie, no Origin, a foreign Origin or
Host, a guessed mount id, a client without the socket key (which cannot obtain a mount id), a
mount used after its page left, malformed calls, oversized calls and a handle flood.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import secrets
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from bridge_client import Credentials, PageClient, launch
from browser import ServedApp, served_app
from projects import write_project

from wvwasi.runtime.bridge.protocol import Op, json_record, split_json
from wvwasi.runtime.hostfs import MAX_HANDLES, MAX_IO

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path],
        module_cache_dir: Path) -> Iterator[ServedApp]:
    base = tmp_path_factory.mktemp("hostile-hostfs")
    page = {"preopens": [{"guest": "/data", "host": "$APPDATA/data", "mode": "rw"}]}
    root = write_project(base / "app", {"echo": {"source": "echo_lines"}},
                         resolve_wasm=wasm_fixture, extra={"page": page})
    with served_app(root, dirs=base / "dirs", cache=module_cache_dir) as served:
        data = served.bridge.host.paths.resolve("$APPDATA/data")
        data.mkdir(parents=True, exist_ok=True)
        (data / "big").write_bytes(b"x" * (3 * MAX_IO))
        yield served


def call(creds: Credentials, mount: str, head: dict, data: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, dict | None, bytes]:
    """One POST with exactly `headers` (default: the page's cookie and Origin)."""
    raw = json.dumps(head).encode()
    body = struct.pack("<I", len(raw)) + raw + data
    conn = http.client.HTTPConnection("127.0.0.1", creds.port, timeout=10)
    try:
        conn.putrequest("POST", f"/__wvwasi/fs/{mount}", skip_host=True,
                        skip_accept_encoding=True)
        sent = {"Host": f"127.0.0.1:{creds.port}", **(creds.headers() if headers is None
                                                       else headers)}
        for k, v in {**sent, "Content-Length": str(len(body))}.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        answer = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        return resp.status, None, answer
    (size,) = struct.unpack_from("<I", answer)
    return 200, json.loads(answer[4:4 + size]), answer[4 + size:]


async def mounted(client: PageClient, ident: int = 1, **spec: object) -> tuple[Op, dict]:
    await client.send(json_record(Op.MOUNT, ident, spec))
    found = await client.answer(ident, (Op.MOUNTED, Op.ERROR))
    assert found is not None
    return found[0], split_json(memoryview(found[1]))[0]


def test_only_the_page_with_its_key_cookie_and_origin_can_call(app: ServedApp) -> None:
    creds = launch(app)

    async def scenario() -> None:
        async with await PageClient.open(creds) as page:
            op, reply = await mounted(page, preopen="/data")
            assert op is Op.MOUNTED and reply["mode"] == "rw"
            mount = reply["mount"]
            ok = {"op": "pstat", "h": 0, "path": "big", "follow": False}
            assert call(creds, mount, ok)[1]["errno"] == 0
            cookie_only = {"Cookie": creds.cookie}
            assert call(creds, mount, ok, headers=cookie_only)[0] == 403  # no Origin
            assert call(creds, mount, ok, headers={"Origin": creds.origin})[0] == 403  # no cookie
            evil = {"Cookie": creds.cookie, "Origin": "http://evil.example"}
            assert call(creds, mount, ok, headers=evil)[0] == 403
            rebound = {**creds.headers(), "Host": "attacker.example:80"}
            assert call(creds, mount, ok, headers=rebound)[0] == 403
            assert call(creds, secrets.token_urlsafe(24), ok)[0] == 404  # a guessed mount id
        # the page left: its mount ids are gone with it
        for _ in range(50):
            if not app.bridge._folders:
                break
            await asyncio.sleep(0.05)
        assert call(creds, mount, ok)[0] == 404

    asyncio.run(scenario())


def test_without_the_socket_key_no_mount_id_can_be_obtained(app: ServedApp) -> None:
    creds = launch(app)

    async def scenario() -> None:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await PageClient.open(creds, key="not-the-key")
        assert refused.value.status == 403

    asyncio.run(scenario())


def test_mounts_only_narrow_and_bad_calls_get_errnos_not_crashes(app: ServedApp) -> None:
    creds = launch(app)

    async def scenario() -> None:
        async with await PageClient.open(creds) as page:
            op, reply = await mounted(page, 1, preopen="/etc")
            assert op is Op.ERROR and reply["kind"] == "permission"
            op, reply = await mounted(page, 2, grant="made-up")
            assert op is Op.ERROR and reply["kind"] == "permission"
            op, reply = await mounted(page, 3, preopen="/data", mode="ro")
            assert op is Op.MOUNTED and reply["mode"] == "ro"
            ro = reply["mount"]
            write = {"op": "open", "h": 0, "path": "new", "creat": True, "write": True}
            assert call(creds, ro, write)[1]["errno"] == 63  # EPERM: a ro mount of a rw folder
            mount = (await mounted(page, 4, preopen="/data"))[1]["mount"]
            for head in ({"op": "read"}, {"op": "open", "h": "0", "path": 1},
                         {"op": "nope", "h": 0}, {"op": "close", "h": 0},
                         {"op": "open", "h": 0, "path": "a\u0000b"},
                         {"op": "open", "h": 0, "path": "/etc/passwd"},
                         {"op": "open", "h": 0, "path": "../../../../etc/passwd"}):
                status, answer, _ = call(creds, mount, head)
                assert status == 200 and answer["errno"] != 0, head
            status, _, _ = call(creds, mount, {"op": "write", "h": 0}, b"x" * (2 << 20))
            assert status == 413  # bigger than any call may be
            # a read returns at most MAX_IO bytes, whatever it asks for
            _, opened, _ = call(creds, mount, {"op": "open", "h": 0, "path": "big"})
            _, answer, data = call(creds, mount, {"op": "read", "h": opened["h"], "len": 1 << 30})
            assert answer["errno"] == 0 and len(data) == MAX_IO
            # open handles are bounded per mount: EMFILE, never an fd leak
            codes = [call(creds, mount, {"op": "open", "h": 0, "path": "big"})[1]["errno"]
                     for _ in range(MAX_HANDLES + 5)]
            assert 33 in codes and codes.count(0) < MAX_HANDLES
        for _ in range(50):
            if not app.bridge._folders:
                break
            await asyncio.sleep(0.05)
        assert app.bridge._folders == {}

    asyncio.run(scenario())

"""A plain aiohttp WebSocket client that plays a page (honest or hostile) against a real bridge.

`launch(app)` opens a launch URL like the window does and returns the page's credentials (the
session cookie and the socket key from the redirect); `PageClient` speaks the bridge protocol
(tests/../runtime/bridge/protocol.py) and collects what comes back.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from browser import ServedApp, served_app
from projects import write_project

from wvwasi.runtime.bridge.protocol import U32, Op, iter_records, json_record, record

SERVICES = {
    "echo": {"source": "echo_lines", "kind": "dedicated"},
    "blockread": {"source": "blockread", "kind": "dedicated"},
    "loop": {"source": "loop", "kind": "dedicated"},
    "wc": {"source": "wc", "kind": "task"},
    "hub": {"source": "echo_lines", "kind": "background"},
}


@dataclass(frozen=True)
class Credentials:
    """What the app's page holds after its launch."""

    port: int
    origin: str
    cookie: str  # `wvwasi_PORT=value`
    key: str  # the socket key

    def headers(self) -> dict[str, str]:
        return {"Cookie": self.cookie, "Origin": self.origin}

    def ws_url(self, key: str | None = None) -> str:
        return f"ws://127.0.0.1:{self.port}/__wvwasi/ws?key={self.key if key is None else key}"


@contextmanager
def served_services(
    base: Path, wasm_fixture: Callable[[str], Path], cache: Path, *, copy_pages: bool = False
) -> Iterator[ServedApp]:
    """The SERVICES app, served with its own app folders under `base` (a module's fixture)."""
    root = write_project(base / "app", SERVICES, resolve_wasm=wasm_fixture)
    with served_app(root, dirs=base / "dirs", cache=cache, copy_pages=copy_pages) as app:
        yield app


def get(port: int, target: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """A GET with exactly these headers (Host included), body read."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        for k, v in {"Host": f"127.0.0.1:{port}", **(headers or {})}.items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp
    finally:
        conn.close()


def launch_with(url: str) -> Credentials:
    """Use the launch URL `url` once, like the window does."""
    parts = urlsplit(url)
    port = int(parts.port or 0)
    resp = get(port, f"{parts.path}?{parts.query}")
    assert resp.status == 303, resp.status
    location = resp.getheader("Location") or ""
    key = parse_qs(urlsplit(location).query).get("wvwasi-key", [""])[0]
    cookie = (resp.getheader("Set-Cookie") or "").split(";", 1)[0]
    return Credentials(port, f"http://127.0.0.1:{port}", cookie, key)


def launch(app: Any) -> Credentials:
    """A fresh launch of the served app (`browser.ServedApp`)."""
    return launch_with(app.bridge.launch_url())


def spawn(ident: int, service: str, **spec: Any) -> bytes:
    return json_record(Op.SPAWN, ident, {"service": service, **spec})


def run(ident: int, service: str, stdin: bytes = b"", **spec: Any) -> bytes:
    return json_record(Op.RUN, ident, {"service": service, "stdin": len(stdin), **spec}, stdin)


def send(ident: int, data: bytes) -> bytes:
    return record(Op.SEND, ident, data)


def credit(ident: int, amount: int) -> bytes:
    return record(Op.CREDIT, ident, U32.pack(amount))


class PageClient:
    """One page connection: `await PageClient.open(creds)`, then send and receive records."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self._session = session
        self.ws = ws
        self.records: list[tuple[Op, int, bytes]] = []
        self.close_code: int | None = None

    @classmethod
    async def open(cls, creds: Credentials, key: str | None = None,
                   headers: dict[str, str] | None = None) -> PageClient:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(creds.ws_url(key), headers=headers or creds.headers(),
                                          autoclose=False, max_msg_size=0)
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def send(self, *records: bytes) -> None:
        await self.ws.send_bytes(b"".join(records))

    async def receive(self, timeout: float = 20) -> bool:
        """Read one frame into `records`; False once the bridge has closed."""
        if self.close_code is not None:
            return False
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type == aiohttp.WSMsgType.BINARY:
            self.records.extend((op, i, bytes(p)) for op, i, p in iter_records(msg.data))
            return True
        self.close_code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else -1
        return False

    async def wait_for(self, op: Op, ident: int, timeout: float = 20) -> bytes | None:
        """The payload of the first `op` record for `ident` (None if the bridge closed)."""
        found = await self.answer(ident, (op,), timeout)
        return None if found is None else found[1]

    async def answer(
        self, ident: int, ops: tuple[Op, ...], timeout: float = 20
    ) -> tuple[Op, bytes] | None:
        """The first record for `ident` whose op is in `ops` (None if the bridge closed);
        TimeoutError if none came within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        seen = 0
        while True:
            for rop, rid, payload in self.records[seen:]:
                if rop in ops and rid == ident:
                    return rop, payload
            seen = len(self.records)
            if not await self.receive(max(0.01, end - loop.time())):
                return None

    async def until_closed(self, timeout: float = 20) -> int | None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while await self.receive(max(0.01, end - loop.time())):
            pass
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self._session.close()

    async def __aenter__(self) -> PageClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def rss_bytes() -> int:
    """This process's resident memory (the bridge and host run in it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def thread_count() -> int:
    return threading.active_count()


class RawPage:
    """A page connection on a plain socket that never reads after the handshake: the bridge's
    output piles up in its kernel buffers (kept small) and then in the bridge."""

    def __init__(self, creds: Credentials) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        self.sock.connect(("127.0.0.1", creds.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            f"GET /__wvwasi/ws?key={creds.key} HTTP/1.1\r\nHost: 127.0.0.1:{creds.port}\r\n"
            f"Origin: {creds.origin}\r\nCookie: {creds.cookie}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)  # byte by byte: nothing after the handshake is read
            if not chunk:
                raise ConnectionError("the bridge closed during the handshake")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:80]
        self.sock.settimeout(2)

    def send(self, *records: bytes) -> bool:
        """One masked binary frame; False when the bridge no longer takes it (back-pressure or
        a closed connection)."""
        payload = b"".join(records)
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536 else
                                bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        masked = (int.from_bytes(payload, "little") ^ int.from_bytes(mask * (n // 4 + 1),
                                                                    "little")
                  ).to_bytes(len(mask * (n // 4 + 1)), "little")[:n]
        try:
            self.sock.sendall(head + mask + masked)
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()

"""The bridge admits only the app's own page: every refusal happens before any service is touched.

Raw HTTP and WebSocket clients play the other local processes (any Host, Origin or cookie they
like); a real Chromium plays a page from another origin on the same machine. The SpyHost records
every spawn/subscribe the bridge asks of the real host, so "refused" is checked as "nothing ran".
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from bridge_client import get
from browser import ServedApp, chromium, served_app
from projects import write_project

from wvwasi.runtime.bridge.protocol import U32, Op, iter_records, json_record, record

# A hung page or bridge fails its test instead of stalling the whole run.
pytestmark = pytest.mark.timeout(120)

SERVICES = {
    "echo": {"source": "echo_lines", "kind": "dedicated"},
    "blockread": {"source": "blockread", "kind": "dedicated"},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path]) -> Path:
    return write_project(tmp_path_factory.mktemp("security") / "app", SERVICES,
                         resolve_wasm=wasm_fixture)


@pytest.fixture(scope="module")
def app(
    project: Path, tmp_path_factory: pytest.TempPathFactory, module_cache_dir: Path
) -> Iterator[ServedApp]:
    with served_app(project, dirs=tmp_path_factory.mktemp("dirs"), cache=module_cache_dir) as a:
        yield a


# --- raw clients -----------------------------------------------------------------------------


def port_of(app: ServedApp) -> int:
    return int(urlsplit(app.origin).port or 0)


def http_get(port: int, target: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, response) of a GET with exactly these headers (Host included)."""
    resp = get(port, target, headers)
    return resp.status, resp


def launch(app: ServedApp) -> str:
    """Open a launch URL like the window does; returns the `name=value` session cookie."""
    return launch_with_key(app)[0]


#: The socket key each port's bridge gave at its last launch (what wvwasi.js would present).
SOCKET_KEYS: dict[int, str] = {}


def launch_with_key(app: ServedApp) -> tuple[str, str]:
    """Open a launch URL; (the `name=value` session cookie, the socket key)."""
    url = urlsplit(app.url)
    status, resp = http_get(port_of(app), f"{url.path}?{url.query}")
    assert status == 303
    key = resp.getheader("Location").split("wvwasi-key=", 1)[1]
    SOCKET_KEYS[port_of(app)] = key
    return resp.getheader("Set-Cookie").split(";", 1)[0], key


def spawn_frame(ident: int, service: str) -> bytes:
    return json_record(Op.SPAWN, ident, {"service": service})


def ws_url(port: int, key: str | None = None) -> str:
    """The socket URL with `key` (default: the key of the port's last launch)."""
    key = SOCKET_KEYS.get(port, "") if key is None else key
    return f"ws://127.0.0.1:{port}/__wvwasi/ws?key={key}"


#: Seconds to wait for the bridge's next frame: a service's first start compiles it, which took
#: over 10 s under Wine on the loaded 2-core test machine (tests/test_windows_pytest.py).
REPLY_WAIT = 60


async def _exchange(
    port: int, headers: dict[str, str], frames: list[bytes | str], want: int,
    key: str | None = None,
) -> tuple[list[tuple[Op, int, bytes]], int | None]:
    """Connect, send `frames`, collect records until `want` arrived or the bridge closes;
    returns (records, close code or None)."""
    got: list[tuple[Op, int, bytes]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
        ws_url(port, key), headers=headers, autoclose=False
    ) as ws:
        for frame in frames:
            await (ws.send_str(frame) if isinstance(frame, str) else ws.send_bytes(frame))
        while len(got) < want:
            msg = await asyncio.wait_for(ws.receive(), REPLY_WAIT)
            if msg.type != aiohttp.WSMsgType.BINARY:
                return got, msg.data if msg.type == aiohttp.WSMsgType.CLOSE else None
            got.extend((op, i, bytes(p)) for op, i, p in iter_records(msg.data))
        return got, None


def exchange(port: int, headers: dict[str, str], frames: list[bytes | str], want: int = 1) -> Any:
    return asyncio.run(_exchange(port, headers, frames, want))


def good_headers(app: ServedApp, cookie: str) -> dict[str, str]:
    return {"Cookie": cookie, "Origin": app.origin}


def handshake_status(port: int, headers: dict[str, str]) -> int:
    """The HTTP status of a WebSocket handshake that sends a SPAWN if it is accepted."""
    try:
        exchange(port, headers, [spawn_frame(1, "echo")], want=0)
    except aiohttp.WSServerHandshakeError as e:
        return e.status
    return 101


# --- the tests -------------------------------------------------------------------------------


def test_launch_sets_an_httponly_strict_cookie_and_redirects(app: ServedApp) -> None:
    url = urlsplit(app.url)
    status, resp = http_get(port_of(app), f"{url.path}?{url.query}")
    assert status == 303
    assert resp.getheader("Location").startswith("/?wvwasi-key=")
    cookie = resp.getheader("Set-Cookie")
    assert cookie.startswith(f"wvwasi_{port_of(app)}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert url.query.split("=", 1)[1] not in cookie  # the URL secret is not the session
    assert resp.getheader("Location").split("=", 1)[1] not in cookie  # nor the socket key


def test_without_the_launch_secret_everything_is_refused(app: ServedApp) -> None:
    port, before = port_of(app), len(app.spy.calls)
    for target in ("/", "/index.html", "/__wvwasi/wvwasi.js", "/__wvwasi/launch",
                   "/__wvwasi/launch?token=wrong", "/__wvwasi/launch?token="):
        status, resp = http_get(port, target)
        assert status == 403, target
        assert resp.getheader("Set-Cookie") is None
    origin = {"Origin": app.origin}
    assert handshake_status(port, origin) == 403
    assert handshake_status(port, {**origin, "Cookie": f"wvwasi_{port}=guessed"}) == 403
    assert handshake_status(port, {**origin, "Cookie": f"wvwasi_{port}="}) == 403
    assert len(app.spy.calls) == before


def test_wrong_origin_is_refused(app: ServedApp) -> None:
    port, cookie, before = port_of(app), launch(app), len(app.spy.calls)
    for origin in ("http://evil.example", f"http://localhost:{port}", "null",
                   f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"):
        assert handshake_status(port, {"Cookie": cookie, "Origin": origin}) == 403, origin
        assert http_get(port, "/", {"Cookie": cookie, "Origin": origin})[0] == 403, origin
    assert handshake_status(port, {"Cookie": cookie}) == 403  # no Origin at all
    assert len(app.spy.calls) == before
    # The same request with the right Origin is accepted and does spawn.
    records, _ = exchange(port, good_headers(app, cookie), [spawn_frame(1, "blockread")])
    assert records[0][0] is Op.MESSAGE
    assert app.spy.calls[before:] == [("spawn", "blockread")]


def test_wrong_host_is_refused(app: ServedApp) -> None:
    port, cookie, before = port_of(app), launch(app), len(app.spy.calls)
    for host in (f"localhost:{port}", f"evil.example:{port}", "127.0.0.1", f"127.0.0.2:{port}"):
        headers = {"Host": host, "Cookie": cookie, "Origin": app.origin}
        assert http_get(port, "/", headers)[0] == 403, host
        assert handshake_status(port, headers) == 403, host
    url = urlsplit(app.url)
    status, resp = http_get(port, f"{url.path}?{url.query}", {"Host": f"localhost:{port}"})
    assert status == 403
    assert resp.getheader("Set-Cookie") is None
    assert len(app.spy.calls) == before


@pytest.mark.skipif(sys.platform == "win32", reason="drives Debian's Chromium through "
                    "Playwright: there is none for the Windows CPython under Wine")
def test_a_page_from_another_local_origin_is_refused(app: ServedApp) -> None:
    """Cookies are not port-specific: a page on another 127.0.0.1 port in the same browser sends
    the session cookie along. Its Origin is what gives it away."""
    port, before = port_of(app), len(app.spy.calls)
    spawn = list(spawn_frame(1, "echo"))
    html = f"""<!doctype html><script>
    window.result = new Promise((resolve) => {{
        const ws = new WebSocket('ws://127.0.0.1:{port}/__wvwasi/ws');
        ws.onopen = () => {{ ws.send(new Uint8Array({spawn})); resolve('open'); }};
        ws.onclose = (e) => resolve('closed ' + e.code);
    }});
    </script>""".encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: Any) -> None:
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with chromium() as browser:
            context = browser.new_context()
            context.new_page().goto(app.url)  # the user's real app session
            assert any(c["name"] == f"wvwasi_{port}" for c in context.cookies())
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            assert page.evaluate("window.result") == "closed 1006"
    finally:
        evil.shutdown()
        evil.server_close()
    assert len(app.spy.calls) == before


def test_a_second_window_has_its_own_session_until_it_closes(app: ServedApp) -> None:
    """`wvwasi.window.open`'s launch URL: only pages of the UI, a cookie and key of its own
    (neither works with the other's), redirected to its page; refused once forgotten."""
    port, (main_cookie, main_key) = port_of(app), launch_with_key(app)
    for page in ("https://example.com/", "../wvwasi.toml", "missing.html", "style.css",
                 "/index.html", "index.html?x=1", "", "nested/../index.html", "a:b.html"):
        with pytest.raises(ValueError, match=r"not a page|not an HTML page"):
            app.bridge.window_url("w1", page)
    url = urlsplit(app.bridge.window_url("w1", "inline.html"))
    status, resp = http_get(port, f"{url.path}?{url.query}")
    assert status == 303
    location = resp.getheader("Location")
    assert location.startswith("/inline.html?wvwasi-key=")
    key = location.split("wvwasi-key=", 1)[1]
    cookie = resp.getheader("Set-Cookie").split(";", 1)[0]
    assert cookie.startswith(f"wvwasi_{port}_w1=") and key != main_key
    assert http_get(port, "/inline.html", {"Cookie": cookie})[0] == 200

    def handshake(cookie: str, key: str) -> int:
        try:
            asyncio.run(_exchange(port, good_headers(app, cookie), [], 0, key))
        except aiohttp.WSServerHandshakeError as e:
            return e.status
        return 101

    assert handshake(cookie, key) == 101
    assert handshake(cookie, main_key) == 403 and handshake(main_cookie, key) == 403
    # a cookie jar shared by both windows sends both cookies: the key says which window it is
    assert handshake(f"{main_cookie}; {cookie}", key) == 101
    app.bridge.forget_window("w1")
    assert handshake(cookie, key) == 403
    assert http_get(port, "/inline.html", {"Cookie": cookie})[0] == 403
    assert http_get(port, f"{url.path}?{url.query}")[0] == 403  # its token was used
    assert handshake(main_cookie, main_key) == 101  # the main window is unaffected


def test_secret_and_cookie_are_refused_after_the_bridge_closes(
    project: Path, tmp_path: Path, module_cache_dir: Path
) -> None:
    with served_app(project, dirs=tmp_path, cache=module_cache_dir, copy_pages=False) as first:
        port, old_url, old_cookie = port_of(first), first.url, launch(first)
        assert exchange(port, good_headers(first, old_cookie), [spawn_frame(1, "blockread")])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    # A new run of the app on the same port has new secrets: the old ones replay to nothing.
    with served_app(project, dirs=tmp_path, cache=module_cache_dir, copy_pages=False,
                    port=port) as second:
        assert port_of(second) == port
        url = urlsplit(old_url)
        status, resp = http_get(port, f"{url.path}?{url.query}")
        assert status == 403
        assert resp.getheader("Set-Cookie") is None
        assert http_get(port, "/", {"Cookie": old_cookie})[0] == 403
        assert handshake_status(port, good_headers(second, old_cookie)) == 403
        assert second.spy.calls == []


MALFORMED: dict[str, list[bytes | str]] = {
    "text frame": ["hello"],
    "empty frame": [b""],
    "cut header": [b"\x01\x00\x00"],
    "length past the frame": [record(Op.SEND, 1, b"abc")[:-1]],
    "unknown op": [record(Op.SEND, 1)[:4] + b"\x63" + record(Op.SEND, 1)[5:]],
    "op of the other direction": [record(Op.MESSAGE, 1, b"x")],
    "spawn without JSON": [record(Op.SPAWN, 1, b"\x05\x00")],
    "spawn with bad JSON": [record(Op.SPAWN, 1, U32.pack(3) + b"{x}")],
    "spawn with args not strings": [json_record(Op.SPAWN, 1, {"service": "echo", "args": [1]})],
    "credit of 3 bytes": [spawn_frame(1, "echo") + record(Op.CREDIT, 1, b"abc")],
    "newline in a lines message": [spawn_frame(1, "echo") + record(Op.SEND, 1, b"a\nb")],
    "id reused": [spawn_frame(1, "blockread") + spawn_frame(1, "blockread")],
}


@pytest.mark.parametrize("frames", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_frame_closes_only_its_connection(
    app: ServedApp, frames: list[bytes | str]
) -> None:
    port, cookie = port_of(app), launch(app)
    headers = good_headers(app, cookie)

    async def next_message(ws: aiohttp.ClientWebSocketResponse) -> bytes:
        while True:
            msg = await asyncio.wait_for(ws.receive(), REPLY_WAIT)
            for op, _, payload in iter_records(msg.data):
                if op is Op.MESSAGE:
                    return bytes(payload)

    async def scenario() -> tuple[list[bytes], Any, Any]:
        async with aiohttp.ClientSession() as session, session.ws_connect(
            ws_url(port), headers=headers
        ) as good:
            await good.send_bytes(spawn_frame(7, "echo") + record(Op.SEND, 7, b"before"))
            first = await next_message(good)
            before = len(app.spy.instances)
            bad = await _exchange(port, headers, frames, want=10**6)
            await good.send_bytes(record(Op.SEND, 7, b"after"))
            second = await next_message(good)
            return [first, second], bad, app.spy.instances[before:]

    echoed, (_, code), started = asyncio.run(scenario())
    assert code in (1002, 1003)  # protocol error / unsupported data
    assert echoed == [b"before", b"after"]
    for inst in started:  # anything the bad connection started ended with it
        exited = inst.wait(5)
        assert exited is not None and exited.error is not None
        assert exited.error.kind == "terminated"


def _non_loopback_ipv4() -> list[str]:
    """The machine's outward IPv4 address, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return []
        addr = s.getsockname()[0]
    return [] if addr.startswith("127.") or addr == "0.0.0.0" else [addr]


def test_listens_on_127_0_0_1_only(app: ServedApp) -> None:
    port = port_of(app)
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    for addr in ["127.0.0.2", *_non_loopback_ipv4()]:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((addr, port), timeout=5).close()
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6, pytest.raises(OSError):
        s6.settimeout(5)
        s6.connect(("::1", port))


def test_a_busy_port_is_a_clear_error(
    project: Path, tmp_path: Path, module_cache_dir: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"), served_app(
            project, dirs=tmp_path, cache=module_cache_dir, copy_pages=False, port=port
        ):
            pass


"""Item 10 of issue 7: a captured session cookie alone drives nothing; launch tokens work once.

Browsers send cookies to every port of a host, so a server on another 127.0.0.1 port receives
the app's `wvwasi_PORT` cookie. Here a real Chromium opens the app, then a page of such a server
(which records the Cookie header it gets); a plain aiohttp client replays that cookie with a
forged Origin and Host. The bridge must refuse it before any service is touched.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from bridge_client import (
    Credentials,
    PageClient,
    get,
    launch,
    launch_with,
    served_services,
    spawn,
)
from browser import ServedApp, chromium

from wvwasi.runtime.bridge.protocol import Op, json_record
from wvwasi.runtime.bridge.session import APP_CALLS_PER_PAGE

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path],
    module_cache_dir: Path,
) -> Iterator[ServedApp]:
    base = tmp_path_factory.mktemp("session")
    with served_services(base, wasm_fixture, module_cache_dir, copy_pages=True) as a:
        yield a


def handshake(creds: Credentials, key: str | None, headers: dict[str, str]) -> int:
    """The status of a WebSocket handshake (101 if accepted, then a SPAWN is sent)."""

    async def attempt() -> int:
        try:
            async with await PageClient.open(creds, key=key, headers=headers) as page:
                await page.send(spawn(1, "echo"))
                await asyncio.sleep(0.2)
        except aiohttp.WSServerHandshakeError as e:
            return e.status
        return 101

    return asyncio.run(attempt())


def test_a_launch_token_works_once(app: ServedApp) -> None:
    url = app.bridge.launch_url()
    launch_with(url)
    parts = urlsplit(url)
    again = get(int(parts.port or 0), f"{parts.path}?{parts.query}")
    assert again.status == 403
    assert again.getheader("Set-Cookie") is None
    assert app.first_url != url  # every launch URL has its own token


def test_a_replayed_cookie_with_forged_origin_drives_nothing(app: ServedApp) -> None:
    """The issue's attack: a server on another local port collects the cookie the browser sends
    it, then replays it from a plain client with the app's Origin and Host."""
    seen: list[str] = []

    class Collector(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Cookie") or "")
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<!doctype html><p>innocent</p>")

        def log_message(self, *args: Any) -> None:
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    port = int(urlsplit(app.origin).port or 0)
    try:
        with chromium() as browser:
            context = browser.new_context()
            page = app.open(context)  # the user's real app session
            real = page.evaluate("""async () => {
                const r = await WasiWorker.run('wc', {stdin: 'a b'});
                return r.stdout;
            }""")
            assert real == "0 2 3\n"
            context.new_page().goto(f"http://127.0.0.1:{evil.server_address[1]}/")
    finally:
        evil.shutdown()
        evil.server_close()
    captured = next((c for c in seen if f"wvwasi_{port}=" in c), None)
    assert captured is not None, f"the browser did not send the cookie across ports: {seen}"
    cookie = next(p.strip() for p in captured.split(";") if p.strip().startswith(f"wvwasi_{port}="))

    before = len(app.spy.calls)
    creds = Credentials(port, app.origin, cookie, key="")
    forged = {"Cookie": cookie, "Origin": app.origin, "Host": f"127.0.0.1:{port}"}
    assert handshake(creds, "", forged) == 403
    assert handshake(creds, "guessed", forged) == 403
    assert handshake(creds, "", {**forged, "Sec-Fetch-Site": "same-origin"}) == 403
    # ... and what the cookie can fetch over plain HTTP does not carry the socket key.
    for target in ("/", "/__wvwasi/wvwasi.js", "/index.html"):
        resp = get(port, target, {"Cookie": cookie})
        assert resp.status in (200, 404)
    assert app.spy.calls[before:] == []


def test_the_socket_key_is_not_in_anything_the_cookie_fetches(app: ServedApp) -> None:
    creds = launch(app)
    port = creds.port
    for target in ("/", "/__wvwasi/wvwasi.js", "/__wvwasi/wvwasi.d.ts"):
        conn_resp = _body(port, target, creds.cookie)
        assert creds.key.encode() not in conn_resp, target
    # With the key, the same plain client is the page.
    before = len(app.spy.calls)
    assert handshake(creds, None, creds.headers()) == 101
    assert app.spy.calls[before:] == [("spawn", "echo")]


def _body(port: int, target: str, cookie: str) -> bytes:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target, headers={"Cookie": cookie})
        return conn.getresponse().read()
    finally:
        conn.close()


def test_the_page_keeps_its_key_across_reloads_and_hides_it(app: ServedApp) -> None:
    with chromium() as browser:
        context = browser.new_context()
        page = app.open(context)
        assert page.url == app.origin + "/"  # the key left the address bar
        page.reload()
        assert page.evaluate("WasiWorker.run('wc', {stdin: 'x'}).then((r) => r.stdout)") == (
            "0 1 1\n"
        )
        # A second tab that only has the cookie (not launched) cannot open a socket.
        other = context.new_page()
        other.goto(app.origin + "/")
        outcome = other.evaluate("""WasiWorker.run('wc', {stdin: 'x'}).then(
            (r) => 'ran', (e) => e.kind)""")
        assert outcome == "bridge"


def test_lines_keep_a_leading_bom_and_refuse_lone_surrogates(app: ServedApp) -> None:
    with chromium() as browser:
        page = app.open(browser.new_context())
        result = page.evaluate("""async () => {
            const w = new WasiWorker('echo');
            const got = new Promise((resolve) => { w.onmessage = (e) => resolve(e.data); });
            w.postMessage('\\uFEFFbom');
            const echoed = await got;
            let lone = 'accepted';
            try { w.postMessage('a\\uD800b'); } catch (e) { lone = e.constructor.name; }
            let arg = 'accepted';
            try {
                new WasiWorker('echo', {args: ['\\uDC00']});
            } catch (e) {
                arg = e.constructor.name;
            }
            w.terminate();
            const run = await WasiWorker.run('wc', {stdin: '\\uFEFF'});
            return {echoed, lone, arg, bytes: run.stdout};
        }""")
    assert result["echoed"] == "\ufeffbom"
    assert result["lone"] == "TypeError"
    assert result["arg"] == "TypeError"
    assert result["bytes"] == "0 1 3\n"  # wc saw the three bytes of U+FEFF


def test_a_flood_of_window_calls_holds_a_bounded_number(app: ServedApp) -> None:
    """2,000 `wvwasi.window` calls sent at once while the window's GUI loop takes none (as when
    it is busy): at most APP_CALLS_PER_PAGE wait in the bridge, the rest are refused at once
    with kind `limit`, and once the loop takes them again the page's next call works."""
    entered = threading.Semaphore(0)
    release = threading.Event()
    running: list[str] = []

    def window_calls(window: str, call: str, args: list) -> Any:
        running.append(call)
        entered.release()
        release.wait(30)
        return None

    app.bridge.app_calls = window_calls

    async def flood() -> tuple[list[Any], list[tuple[Op, bytes] | None], Op | None]:
        async with await PageClient.open(launch(app)) as page:
            await page.send(*(json_record(Op.APP, i, {"call": "setTitle", "args": [f"t{i}"]})
                              for i in range(1, 2001)))
            for _ in range(APP_CALLS_PER_PAGE):  # the calls the bridge lets through
                assert await asyncio.to_thread(entered.acquire, timeout=30)
            refused = [await page.answer(i, (Op.ERROR, Op.DATA), 30)
                       for i in range(APP_CALLS_PER_PAGE + 1, 2001)]
            waiting = len(running)
            release.set()
            held = [await page.answer(i, (Op.ERROR, Op.DATA), 30)
                    for i in range(1, APP_CALLS_PER_PAGE + 1)]
            await page.send(json_record(Op.APP, 2001, {"call": "setTitle", "args": ["x"]}))
            after = await page.answer(2001, (Op.ERROR, Op.DATA), 30)
            return [waiting, refused], held, after and after[0]

    try:
        (waiting, refused), held, after = asyncio.run(flood())
    finally:
        release.set()
        app.bridge.app_calls = None
    assert waiting == APP_CALLS_PER_PAGE
    assert {r[0] for r in refused if r} == {Op.ERROR} and len(refused) == 2000 - APP_CALLS_PER_PAGE
    assert all(b'"kind":"limit"' in r[1].replace(b" ", b"") for r in refused if r), refused[0]
    assert refused[0] and b"already has 4 wvwasi.window or wvwasi.notify calls" in refused[0][1]
    assert [h and h[0] for h in held] == [Op.DATA] * APP_CALLS_PER_PAGE
    assert after == Op.DATA
    assert len(running) == APP_CALLS_PER_PAGE + 1

"""Candidates for moving large records between page and host, in Chromium and the app windows.

    .venv/bin/python bench/bench_bulk_candidates.py [--engine chromium|gtk|qt] [--mib 1]
                                                    [--n 40] [--runs 3]

Before choosing a bulk transport for the bridge: one aiohttp server on 127.0.0.1 (the bridge's
stack: aiohttp on an asyncio loop) echoes N records of `--mib` MiB one at a time, and a page
times the round trips. The page runs in `chromium --headless` (no DevTools client attached) or,
with `--engine gtk` / `qt`, in a real pywebview window (WebKitGTK, the app's default Linux
engine; Qt WebEngine) on a private Xvfb screen. Candidates:
- `ws`: one binary WebSocket message each way (what the bridge does today);
- `ws_up` / `ws_down`: the record one way only, a 4-byte answer the other way (which direction
  of the engine's WebSocket path costs);
- `ws_64k`: the record cut into 64 KiB WebSocket messages (does the engine's per-message cost or
  its per-byte cost dominate);
- `fetch`: an HTTP POST whose response body is the echo (`fetch(..., {body}).arrayBuffer()`);
- GTK only, the webview's own channels: `scheme`, a custom URI scheme registered on the window's
  WebKit web context (`wvwasi-bulk://`, CORS-enabled; `fetch(..., {method: 'POST', body})`,
  the request body read with `webkit_uri_scheme_request_get_http_body`) answered from the
  aiohttp loop as the bridge would (body copied into Python, reply handed back to the GTK main
  loop); `scheme_raw`, the same answered on the GTK thread without any Python copy (the
  body's GBytes chunks become the reply stream: the engine's own floor for that channel);
  `handler`, a script message handler with reply (`register_script_message_handler_with_reply`)
  echoing the JS value it received (WebKitGTK 2.50: an ArrayBuffer comes back as `{}`, so it
  fails: that channel carries JSON-like values only);
- Qt only: `scheme`, a custom scheme (`QWebEngineUrlSchemeHandler`, registered CorsEnabled and
  FetchApiAllowed) answered from the aiohttp loop the same way;
- `worker`: a plain Web Worker echo (the message copied, not transferred): the baseline.
Also `python`: an aiohttp client in this process against the same WebSocket echo (both ends in
Python, no browser: what the host's WebSocket stack costs under the same load). Every echo is
checked (length and a sample of bytes). Prints MB/s medians of `--runs` runs and the 1-minute
load average (the machine is shared); asserts nothing.
No authentication here (it measures transports, not the bridge).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium_command  # noqa: E402

SCHEME = "wvwasi-bulk"
#: The largest request body the Qt scheme reads (its one read call).
MAX_BODY = 64 << 20
PAGE = """<!doctype html><meta charset="utf-8"><title>bulk</title><script>
const P = new URLSearchParams(location.search);
const SIZE = Number(P.get('mib')) * (1 << 20), N = Number(P.get('n')), RUNS = Number(P.get('runs'));
const CANDIDATES = P.get('candidates').split(',');
function check(back, sent) {
  const kind = Object.prototype.toString.call(back);
  if (!(back instanceof ArrayBuffer)) throw new Error(`got ${kind}`);
  const a = new Uint8Array(back), b = new Uint8Array(sent);
  if (a.length !== b.length) throw new Error(`short echo ${a.length}`);
  for (let i = 0; i < a.length; i += 4093) if (a[i] !== b[i]) throw new Error('bad echo');
}
function socket(path) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}${path}`);
    ws.binaryType = 'arraybuffer';
    const waiters = [];
    ws.onmessage = (e) => waiters.shift()(e.data);
    ws.onopen = () => resolve((msg) => new Promise((r) => { waiters.push(r); ws.send(msg); }));
  });
}
async function wsEcho() { return socket('/ws'); }
async function wsUp() {  // the record up, its length back; check() sees the sent record
  const send = await socket('/ws_up');
  return async (msg) => {
    const n = new DataView(await send(msg)).getUint32(0, true);
    if (n !== msg.byteLength) throw new Error(`server got ${n}`);
    return msg;
  };
}
async function wsDown() {  // a 4-byte length up, a record of that length back
  const send = await socket('/ws_down');
  return async (msg) => {
    const ask = new ArrayBuffer(4);
    new DataView(ask).setUint32(0, msg.byteLength, true);
    return send(ask);
  };
}
async function ws64k() {  // the record in 64 KiB messages, all in flight, reassembled
  const send = await socket('/ws');
  return async (msg) => {
    const parts = [];
    for (let i = 0; i < msg.byteLength; i += 65536) parts.push(send(msg.slice(i, i + 65536)));
    const back = new Uint8Array(msg.byteLength);
    let at = 0;
    for (const part of await Promise.all(parts)) {
      back.set(new Uint8Array(part), at);
      at += part.byteLength;
    }
    return back.buffer;
  };
}
function workerEcho() {
  const src = 'onmessage = (e) => postMessage(e.data);';
  const w = new Worker(URL.createObjectURL(new Blob([src], {type: 'text/javascript'})));
  let waiter = null;
  w.onmessage = (e) => waiter(e.data);
  return (msg) => new Promise((r) => { waiter = r; w.postMessage(msg); });
}
const post = (url) => async (msg) => (await fetch(url, {method: 'POST', body: msg})).arrayBuffer();
const handler = (msg) => window.webkit.messageHandlers.wvbulk.postMessage(msg);
const MAKE = {
  ws: wsEcho, ws_up: wsUp, ws_down: wsDown, ws_64k: ws64k, worker: workerEcho,
  fetch: () => post('/echo'), scheme: () => post('wvwasi-bulk://bench/loop'),
  scheme_raw: () => post('wvwasi-bulk://bench/raw'), handler: () => handler,
};
async function rate(echo, msg, n) {
  check(await echo(msg), msg);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) check(await echo(msg), msg);
  return n / ((performance.now() - t0) / 1000);  // round trips/s
}
(async () => {
  const out = {};
  const msg = new Uint8Array(SIZE).map((_, i) => i % 251).buffer;
  for (const k of CANDIDATES) {
    out[k] = [];
    try {
      const echo = await MAKE[k]();
      for (let r = 0; r < RUNS; r++) out[k].push(await rate(echo, msg, N) * SIZE / 1e6);
    } catch (e) { out[k] = `failed: ${e}`; }
  }
  await fetch('/results', {method: 'POST', body: JSON.stringify(out)});
})();
</script>"""


def pattern(size: int) -> bytes:
    """The page's record: byte i is i % 251."""
    return bytes(range(251)) * (size // 251) + bytes(range(size % 251))


async def serve(limit: int, done: asyncio.Future[dict]) -> tuple[web.AppRunner, int]:
    """The echo server on a free loopback port; `done` gets the page's results."""
    records: dict[int, bytes] = {}

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(max_msg_size=limit, compress=False)
        await sock.prepare(request)
        async for msg in sock:
            if msg.type != WSMsgType.BINARY:
                continue
            if request.path == "/ws_up":
                await sock.send_bytes(len(msg.data).to_bytes(4, "little"))
            elif request.path == "/ws_down":
                size = int.from_bytes(msg.data, "little")
                await sock.send_bytes(records.setdefault(size, pattern(size)))
            else:
                await sock.send_bytes(msg.data)
        return sock

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=body, content_type="application/octet-stream")

    async def results(request: web.Request) -> web.Response:
        if not done.done():
            done.set_result(json.loads(await request.read()))
        return web.Response(text="ok")

    app = web.Application(client_max_size=limit)
    app.router.add_get("/", page)
    for path in ("/ws", "/ws_up", "/ws_down"):
        app.router.add_get(path, ws)
    app.router.add_post("/echo", echo)
    app.router.add_post("/results", results)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def python_client(port: int, args: argparse.Namespace) -> list[float]:
    """MB/s of an aiohttp client echoing the page's record over the same WebSocket route."""
    msg = pattern(args.mib << 20)
    out = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
        f"http://127.0.0.1:{port}/ws", max_msg_size=len(msg) + 4096, compress=0
    ) as sock:
        for _ in range(args.runs):
            t0 = time.perf_counter()
            for _ in range(args.n):
                await sock.send_bytes(msg)
                back = (await sock.receive()).data
                if back != msg:
                    raise RuntimeError("bad echo from the python client's socket")
            out.append(args.n * len(msg) / (time.perf_counter() - t0) / 1e6)
    return out


def chromium_candidates() -> list[str]:
    return ["ws", "ws_up", "ws_down", "ws_64k", "fetch", "worker"]


def qt_candidates() -> list[str]:
    return ["ws", "ws_up", "ws_down", "fetch", "scheme", "worker"]


def gtk_candidates() -> list[str]:
    return ["ws", "ws_up", "ws_down", "ws_64k", "fetch", "scheme", "scheme_raw", "handler",
            "worker"]


def run_chromium(url: str, done: threading.Event) -> None:
    """Open `url` in headless Chromium until `done` is set."""
    with tempfile.TemporaryDirectory(prefix="wvwasi-bench-bulk-",
                                     ignore_cleanup_errors=True) as tmp:
        browser = subprocess.Popen(chromium_command(url, Path(tmp)), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            done.wait(900)
        finally:
            browser.terminate()
            browser.wait(10)


class GtkChannels:
    """The webview's own channels on the GTK window's WebKit context (see the module doc)."""

    def __init__(self, origin: str, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.loop = loop

    def install(self, window: Any) -> None:
        """Register the scheme and the message handler (pywebview's before_show, GTK thread)."""
        from gi.repository import WebKit2

        view = window.native
        while not isinstance(view, WebKit2.WebView):
            view = view.get_child()
        context = view.get_context()
        context.register_uri_scheme(SCHEME, self.on_request)
        context.get_security_manager().register_uri_scheme_as_cors_enabled(SCHEME)
        content = view.get_user_content_manager()
        content.register_script_message_handler_with_reply("wvbulk", None)
        content.connect("script-message-with-reply-received::wvbulk",
                        lambda _manager, value, reply: reply.return_value(value) or True)

    def _finish(self, request: Any, stream: Any, size: int) -> bool:
        from gi.repository import Soup, WebKit2

        response = WebKit2.URISchemeResponse.new(stream, size)
        response.set_content_type("application/octet-stream")
        headers = Soup.MessageHeaders.new(Soup.MessageHeadersType.RESPONSE)
        headers.append("Access-Control-Allow-Origin", self.origin)
        response.set_http_headers(headers)
        request.finish_with_response(response)
        return False  # an idle callback runs once

    def on_request(self, request: Any) -> None:
        from gi.repository import Gio, GLib

        body = request.get_http_body()
        chunks = []
        while body is not None:
            chunk = body.read_bytes(1 << 20, None)
            if chunk.get_size() == 0:
                break
            chunks.append(chunk)
        if request.get_path().endswith("/raw"):
            stream = Gio.MemoryInputStream.new()
            for chunk in chunks:
                stream.add_bytes(chunk)
            self._finish(request, stream, sum(c.get_size() for c in chunks))
            return
        data = b"".join(c.get_data() for c in chunks)

        async def answer() -> None:  # on the loop, as the bridge would; back on the GTK thread
            stream = Gio.MemoryInputStream.new_from_bytes(GLib.Bytes.new(data))
            GLib.idle_add(self._finish, request, stream, len(data))

        asyncio.run_coroutine_threadsafe(answer(), self.loop)


class QtScheme:
    """The custom scheme on the Qt window's WebEngine profile (QWebEngineUrlSchemeHandler)."""

    def __init__(self, origin: str, loop: asyncio.AbstractEventLoop) -> None:
        from qtpy.QtCore import QBuffer, QByteArray, QIODevice, QObject, Signal
        from qtpy.QtWebEngineCore import QWebEngineUrlScheme, QWebEngineUrlSchemeHandler

        scheme = QWebEngineUrlScheme(SCHEME.encode())
        scheme.setFlags(QWebEngineUrlScheme.Flag.CorsEnabled
                        | QWebEngineUrlScheme.Flag.SecureScheme
                        | QWebEngineUrlScheme.Flag.FetchApiAllowed)
        scheme.setSyntax(QWebEngineUrlScheme.Syntax.Host)
        QWebEngineUrlScheme.registerScheme(scheme)  # before the QApplication exists

        class Handler(QWebEngineUrlSchemeHandler):
            def requestStarted(self, job: Any) -> None:
                body, data = job.requestBody(), b""
                if body is not None and body.open(QIODevice.OpenModeFlag.ReadOnly):
                    # One read: Qt 6.11's readAll() of a request body repeats its first 16 KiB.
                    data = bytes(body.read(MAX_BODY))

                async def answer() -> None:  # on the loop, then back on the Qt thread
                    relay.done.emit(job, data)

                asyncio.run_coroutine_threadsafe(answer(), loop)

        def reply(job: Any, data: bytes) -> None:
            buffer = QBuffer(job)
            buffer.setData(QByteArray(data))
            job.setAdditionalResponseHeaders(
                {QByteArray(b"Access-Control-Allow-Origin"): QByteArray(origin.encode())})
            job.reply(b"application/octet-stream", buffer)

        class Relay(QObject):
            done = Signal(object, object)  # emitted on the loop: queued to the Qt thread

        relay = Relay()
        relay.done.connect(reply)
        self.handler, self.relay = Handler(), relay

    def install(self, window: Any) -> None:
        """Install the handler on the window's profile (pywebview's before_show, Qt thread)."""
        window.native.profile.installUrlSchemeHandler(SCHEME.encode(), self.handler)


def run_qt(url: str, origin: str, loop: asyncio.AbstractEventLoop,
           done: threading.Event) -> None:
    """Open `url` in a pywebview Qt window on a private Xvfb screen until `done` is set."""
    from xvfb import xvfb

    from wvwasi.runtime.window import qt

    with xvfb() as display:
        os.environ["DISPLAY"] = display
        qt.prepare()
        import webview

        scheme = QtScheme(origin, loop)
        window = webview.create_window("bulk", url)
        window.events.before_show += scheme.install
        threading.Thread(target=lambda: (done.wait(900), window.destroy()), daemon=True).start()
        webview.start(gui="qt", private_mode=True)


def run_gtk(url: str, channels: GtkChannels, done: threading.Event) -> None:
    """Open `url` in a pywebview GTK window on a private Xvfb screen until `done` is set."""
    from xvfb import xvfb

    with xvfb() as display:
        os.environ["DISPLAY"] = display
        import webview

        window = webview.create_window("bulk", url)
        window.events.before_show += channels.install
        threading.Thread(target=lambda: (done.wait(900), window.destroy()), daemon=True).start()
        webview.start(gui="gtk", private_mode=True)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Serve, measure the Python client, run the page in the engine; all figures."""
    loop = asyncio.new_event_loop()
    done: asyncio.Future[dict] = loop.create_future()
    runner, port = loop.run_until_complete(serve((args.mib << 20) + 4096, done))
    out: dict[str, Any] = {"python": loop.run_until_complete(python_client(port, args))}
    origin = f"http://127.0.0.1:{port}"
    candidates = {"gtk": gtk_candidates(), "qt": qt_candidates()}.get(
        args.engine, chromium_candidates())
    url = (f"{origin}/?mib={args.mib}&n={args.n}&runs={args.runs}"
           f"&candidates={','.join(candidates)}")
    finished = threading.Event()

    def serve_until_done() -> None:
        loop.run_until_complete(done)
        finished.set()

    serving = threading.Thread(target=serve_until_done, daemon=True)
    serving.start()
    try:
        if args.engine == "gtk":
            run_gtk(url, GtkChannels(origin, loop), finished)
        elif args.engine == "qt":
            run_qt(url, origin, loop, finished)
        else:
            run_chromium(url, finished)
    finally:
        finished.set()
        serving.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()
    out.update(done.result())
    out["load_average_1min"] = os.getloadavg()[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("chromium", "gtk", "qt"), default="chromium")
    parser.add_argument("--mib", type=int, default=1)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    out = measure(args)
    engine = {"chromium": "headless Chromium", "gtk": "GTK window (WebKitGTK)",
              "qt": "Qt window (Qt WebEngine)"}[args.engine]
    print(f"{args.mib} MiB round trips, one at a time, {engine}, MB/s (10^6 B/s each way), "
          f"median of {args.runs} (all runs); load average {out['load_average_1min']:.1f} "
          "on 2 shared cores:")
    for key, runs in out.items():
        if key == "load_average_1min":
            continue
        if isinstance(runs, str):
            print(f"{key:<11} {runs}")
        else:
            figures = ", ".join(f"{v:.0f}" for v in runs)
            print(f"{key:<11} {statistics.median(runs):>8.0f}   ({figures})")
    print(json.dumps({"engine": args.engine, "mib": args.mib, **out}))


if __name__ == "__main__":
    main()

"""Small one-at-a-time round trips in one WebKitGTK page: which channel could carry the bridge.

    .venv/bin/python bench/bench_webkit_channels.py [--n 2000] [--runs 3]

On a private Xvfb screen, a bare WebKit2GTK WebView (no pywebview, no bridge, no service) loads
a page from a loopback aiohttp server, and the page times `--n` string echoes one at a time,
each checked, over
- `websocket`: a plain aiohttp WebSocket echo (compression off) — the bridge's transport, minus
  the bridge: its floor in this engine;
- `native`: WebKit's own script-message channel with a reply
  (`await window.webkit.messageHandlers.echo.postMessage(s)`, answered on the GTK main thread
  through `ScriptMessageReply.return_value`) — the native channel a GTK-only bridge could use;
- `worker`: a plain Web Worker echo, the baseline.
Interleaved, `--runs` times; prints round trips/s per run and the median. No authentication
(it measures channels, not the bridge); asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from xvfb import xvfb

PAGE = """<!doctype html><meta charset="utf-8"><title>channels</title><script>
const P = new URLSearchParams(location.search);
const N = Number(P.get('n')), RUNS = Number(P.get('runs'));
async function rate(one) {
  await one(0);
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const back = await one(i);
    if (back !== `message ${i}`) throw new Error(`bad echo ${back}`);
  }
  return N / ((performance.now() - t0) / 1000);
}
function websocket() {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    let waiter = null;
    ws.onmessage = (e) => waiter(e.data);
    ws.onopen = () => resolve((i) => new Promise((r) => { waiter = r; ws.send(`message ${i}`); }));
  });
}
function worker() {
  const src = 'onmessage = (e) => postMessage(e.data);';
  const w = new Worker(URL.createObjectURL(new Blob([src], {type: 'text/javascript'})));
  let waiter = null;
  w.onmessage = (e) => waiter(e.data);
  return (i) => new Promise((r) => { waiter = r; w.postMessage(`message ${i}`); });
}
const native = (i) => window.webkit.messageHandlers.echo.postMessage(`message ${i}`);
(async () => {
  const out = {websocket: [], native: [], worker: []};
  const ws = await websocket(), wk = worker();
  for (let r = 0; r < RUNS; r++) {
    out.websocket.push(await rate(ws));
    out.native.push(await rate(native));
    out.worker.push(await rate(wk));
  }
  return out;
})().then((out) => window.webkit.messageHandlers.done.postMessage(JSON.stringify(out)),
  (e) => window.webkit.messageHandlers.done.postMessage(JSON.stringify({error: String(e)})));
</script>"""


def serve(port: list[int], ready: threading.Event) -> None:
    """The page and the WebSocket echo, on 127.0.0.1 (a daemon thread's own loop)."""
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/ws", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(runner.addresses[0][1])
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def run(n: int, runs: int) -> dict[str, Any]:
    import gi

    gi.require_version("Gtk", "3.0")
    gi.require_version("WebKit2", "4.1")
    gi.require_version("JavaScriptCore", "4.1")
    from gi.repository import GLib, Gtk, JavaScriptCore, WebKit2

    port: list[int] = []
    ready = threading.Event()
    threading.Thread(target=serve, args=(port, ready), daemon=True).start()
    ready.wait(30)
    result: dict[str, Any] = {}
    manager = WebKit2.UserContentManager()

    def on_echo(_: Any, value: Any, reply: Any) -> bool:
        reply.return_value(JavaScriptCore.Value.new_string(value.get_context(),
                                                           value.to_string()))
        return True

    def on_done(_: Any, message: Any) -> None:
        result.update(json.loads(message.get_js_value().to_string()))
        Gtk.main_quit()

    manager.connect("script-message-with-reply-received::echo", on_echo)
    manager.register_script_message_handler_with_reply("echo", None)
    manager.connect("script-message-received::done", on_done)
    manager.register_script_message_handler("done")
    view = WebKit2.WebView.new_with_user_content_manager(manager)
    window = Gtk.Window()
    window.add(view)
    window.set_default_size(400, 300)
    window.show_all()
    view.load_uri(f"http://127.0.0.1:{port[0]}/?n={n}&runs={runs}")
    GLib.timeout_add_seconds(600, Gtk.main_quit)
    Gtk.main()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with xvfb() as display:
        os.environ["DISPLAY"] = display
        result = run(args.n, args.runs)
    if "error" in result or not result:
        raise SystemExit(f"the page failed: {result.get('error', 'timed out')}")
    print(f"WebKitGTK, one {len('message 0000')}-byte string at a time, round trips/s "
          f"(median of {args.runs}; all runs):")
    for name, rates in result.items():
        print(f"{name:<10} {statistics.median(rates):>8,.0f}   "
              f"({', '.join(f'{r:,.0f}' for r in rates)})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Candidates for moving large records between page and host, in headless Chromium.

    .venv/bin/python bench/bench_bulk_candidates.py [--mib 1] [--n 40] [--runs 3]

Before choosing a bulk transport for the bridge: one aiohttp server on 127.0.0.1 (the bridge's
stack: aiohttp on an asyncio loop) echoes N records of `--mib` MiB one at a time, and a
page in `chromium --headless` (no DevTools client attached) times the round trips over
- `ws`: one binary WebSocket message each way (what the bridge does today),
- `fetch`: an HTTP POST whose response body is the echo (`fetch(..., {body}).arrayBuffer()`),
- `worker`: a plain Web Worker echo (the message copied, not transferred): the baseline.
Every echo is checked (length and a sample of bytes). Prints MB/s medians of `--runs` runs,
and the same three for 16-byte messages one at a time (20 N each): the transport's own floor
for the bridge's one-at-a-time round trips.
No authentication here (it measures transports, not the bridge); asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from aiohttp import WSMsgType, web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium_command  # noqa: E402

PAGE = """<!doctype html><meta charset="utf-8"><title>bulk</title><script>
const P = new URLSearchParams(location.search);
const SIZE = Number(P.get('mib')) * (1 << 20), N = Number(P.get('n')), RUNS = Number(P.get('runs'));
function check(back, sent) {
  const a = new Uint8Array(back), b = new Uint8Array(sent);
  if (a.length !== b.length) throw new Error(`short echo ${a.length}`);
  for (let i = 0; i < a.length; i += 4093) if (a[i] !== b[i]) throw new Error('bad echo');
}
function wsEcho() {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    ws.binaryType = 'arraybuffer';
    let waiter = null;
    ws.onmessage = (e) => waiter(e.data);
    ws.onopen = () => resolve((msg) => new Promise((r) => { waiter = r; ws.send(msg); }));
  });
}
function workerEcho() {
  const src = 'onmessage = (e) => postMessage(e.data);';
  const w = new Worker(URL.createObjectURL(new Blob([src], {type: 'text/javascript'})));
  let waiter = null;
  w.onmessage = (e) => waiter(e.data);
  return (msg) => new Promise((r) => { waiter = r; w.postMessage(msg); });
}
const fetchEcho = async (msg) => (await fetch('/echo', {method: 'POST', body: msg})).arrayBuffer();
async function rate(echo, msg, n) {
  check(await echo(msg), msg);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) check(await echo(msg), msg);
  return n / ((performance.now() - t0) / 1000);  // round trips/s
}
(async () => {
  const out = {ws: [], fetch: [], worker: [], ws_small: [], fetch_small: [], worker_small: []};
  try {
    const msg = new Uint8Array(SIZE).map((_, i) => i % 251).buffer;
    const small = new Uint8Array(16).map((_, i) => i).buffer;
    const echoes = {ws: await wsEcho(), fetch: fetchEcho, worker: workerEcho()};
    for (let r = 0; r < RUNS; r++) {
      for (const k of Object.keys(echoes)) {
        out[k].push(await rate(echoes[k], msg, N) * SIZE / 1e6);
        out[`${k}_small`].push(await rate(echoes[k], small, 20 * N));
      }
    }
  } catch (e) { out.error = String(e.stack || e); }
  await fetch('/results', {method: 'POST', body: JSON.stringify(out)});
})();
</script>"""


async def serve(args: argparse.Namespace, done: asyncio.Future[dict]) -> tuple[web.AppRunner, int]:
    limit = (args.mib << 20) + 4096

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(max_msg_size=limit, compress=False)
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == WSMsgType.BINARY:
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
    app.router.add_get("/ws", ws)
    app.router.add_post("/echo", echo)
    app.router.add_post("/results", results)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


async def run(args: argparse.Namespace) -> dict:
    done: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
    runner, port = await serve(args, done)
    with tempfile.TemporaryDirectory(prefix="wvwasi-bench-bulk-",
                                     ignore_cleanup_errors=True) as tmp:
        url = f"http://127.0.0.1:{port}/?mib={args.mib}&n={args.n}&runs={args.runs}"
        browser = subprocess.Popen(chromium_command(url, Path(tmp)), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            return await asyncio.wait_for(done, 600)
        finally:
            browser.terminate()
            browser.wait(10)
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    out = asyncio.run(run(args))
    if "error" in out:
        raise SystemExit(f"the page failed: {out['error']}")
    print(f"{args.mib} MiB round trips, one at a time, headless Chromium, MB/s median of "
          f"{args.runs} (all runs):")
    for key in ("ws", "fetch", "worker"):
        runs = ", ".join(f"{v:.0f}" for v in out[key])
        print(f"{key:<8} {statistics.median(out[key]):>8.0f}   ({runs})")
    print(f"16-byte round trips, one at a time, round trips/s, median of {args.runs} (all runs):")
    for key in ("ws", "fetch", "worker"):
        runs = ", ".join(f"{v:.0f}" for v in out[f"{key}_small"])
        print(f"{key:<8} {statistics.median(out[f'{key}_small']):>8.0f}   ({runs})")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

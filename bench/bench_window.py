"""Page <-> service figures in the real pywebview window, against pywebview's js_api echo there.

    .venv/bin/python bench/bench_window.py [--webview gtk|qt] [--quick] [--no-chromium]

On a private Xvfb screen, runs the benchmark app of bench/bench_bridge.py (same page, services
and project) through the real app entry (`App`: host, bridge, pywebview window; GTK/WebKitGTK by
default). Once the page has loaded, its `wvwasiBench()` measures page <-> `dedicated` echo
through the bridge (`new WasiWorker` -> first message, small messages pipelined and one at a
time, 1 MiB round trips: an ArrayBuffer in `frames`, in `lines` the js_api page's 1 MiB string)
and a plain Web Worker echo in the same engine.

The baseline is pywebview's own channel in the same window: `echo(x)` exposed with
`Window.expose` (the same path as a `js_api` object: each call is a Python thread and its value
comes back through `evaluate_js`), called from bench/js_api_page/ one at a time, 100 in flight
and with a 1 MiB string. pywebview builds `pywebview.api` with `new Function` and returns values
through `eval`, which the bridge's CSP forbids (on the bridge's page `pywebview.api.echo` does not
exist: EvalError), so the window is navigated to that page on a plain loopback server without
a CSP. Both pages are driven with `AppWindow.evaluate`. Unless --no-chromium, the same bridge
page also runs in headless Chromium (bench_bridge.run_page) for a column of its own.

Medians of 3 runs (1 with --quick); prints a table with bridge / js_api ratios and the issue's
goals; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_bridge import run_page, write_bench_app  # noqa: E402
from xvfb import xvfb  # noqa: E402

from wvwasi.runtime.app import App  # noqa: E402
from wvwasi.runtime.manifest import load_manifest  # noqa: E402
from wvwasi.runtime.window import Backend  # noqa: E402

JS_API_PAGE = HERE / "js_api_page"
LOAD_TIMEOUT = 60.0
RUN_TIMEOUT = 300.0
MB_PER_MIB = (1 << 20) / 1e6
#: The issue's goals: bridge small messages pipelined, its ratio to js_api, 1 MiB buffers.
GOAL_PIPELINED = 50_000
GOAL_RATIO = 25
GOAL_MB_S = 300


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the benchmark's output."""


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve `folder` on a loopback port, without any CSP, for the block; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, name="bench-js-api-page",
                                  daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            thread.join()


def echo(x: Any) -> Any:
    """The js_api baseline: returns its argument."""
    return x


def drive(app: App, js_api_url: str, quick: bool, started: float, result: dict[str, Any]) -> None:
    """Measure in the window (on a thread of its own), then close it; fills `result`."""
    import webview

    window = app.window
    options = json.dumps({"quick": quick})
    try:
        if not window.loaded.wait(LOAD_TIMEOUT):
            raise TimeoutError(f"the bridge page did not load within {LOAD_TIMEOUT:g} s")
        result["load_seconds"] = time.perf_counter() - started
        result["bridge"] = window.evaluate(f"wvwasiBench({options})", RUN_TIMEOUT)

        native = webview.windows[0]  # the app's one pywebview window
        window.loaded.clear()
        native.load_url(js_api_url)
        if not window.loaded.wait(LOAD_TIMEOUT):
            raise TimeoutError(f"the js_api page did not load within {LOAD_TIMEOUT:g} s")
        # Only now: exposing adds `pywebview.api.echo` to the current page with `new Function`.
        native.expose(echo)
        result["js_api"] = window.evaluate(f"jsApiBench({options})", RUN_TIMEOUT)
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        window.close()


def run_window(backend: Backend, quick: bool) -> dict[str, Any]:
    """Run both pages in the app window on a private screen; their figures and the load time."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wvwasi-bench-window-") as tmp_name, \
            xvfb() as display, serve_folder(JS_API_PAGE) as js_api_url:
        tmp = Path(tmp_name)
        root, _ = write_bench_app(tmp, entry="window.html")
        os.environ.update(DISPLAY=display, XDG_DATA_HOME=str(tmp / "data"),
                          XDG_CACHE_HOME=str(tmp / "cache"))
        started = time.perf_counter()
        app = App(load_manifest(root), backend=backend)

        def on_started(app: App) -> None:
            threading.Thread(target=drive, args=(app, js_api_url, quick, started, result),
                             name="bench-window-driver", daemon=True).start()

        status = app.run(on_started=on_started)
    if "error" in result:
        raise SystemExit(f"the window benchmark failed:\n{result['error']}")
    if status != 0:
        raise SystemExit(f"the app exited with status {status}")
    return result


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _median(results: dict | None, mode: str, key: str, scale: float = 1.0) -> float | None:
    figure = (results or {}).get(mode, {}).get(key)
    return None if figure is None else figure["median"] * scale


def _goal(*checks: tuple[str, bool]) -> str:
    return ", ".join(f"{text} {'met' if ok else 'MISSED'}" for text, ok in checks)


def report(backend: str, quick: bool, window: dict[str, Any], chromium: dict | None) -> None:
    """Print the table: the window's bridge figures, js_api, their ratio, baselines, goals."""
    bridge, js_api = window["bridge"], window["js_api"]
    rows = []  # label, bridge, js_api, Web Worker, Chromium, goal
    for mode in ("lines", "frames"):
        pipe = bridge[mode]["pipelined_msgs_per_s"]["median"]
        api = js_api["in_flight_100_msgs_per_s"]["median"]
        rows.append((f"small msgs/s pipelined, {mode}", pipe, api,
                     _median(bridge, "web_worker", "pipelined_msgs_per_s"),
                     _median(chromium, mode, "pipelined_msgs_per_s"),
                     _goal((f">= {GOAL_PIPELINED:,}/s", pipe >= GOAL_PIPELINED),
                           (f">= {GOAL_RATIO}x js_api", pipe >= GOAL_RATIO * api))))
    for mode in ("lines", "frames"):
        rows.append((f"small msgs/s one at a time, {mode}",
                     bridge[mode]["one_at_a_time_msgs_per_s"]["median"],
                     js_api["one_at_a_time_msgs_per_s"]["median"],
                     _median(bridge, "web_worker", "one_at_a_time_msgs_per_s"),
                     _median(chromium, mode, "one_at_a_time_msgs_per_s"), ""))
    big = bridge["frames"]["mib_round_trip_mib_per_s"]["median"] * MB_PER_MIB
    rows.append(("1 MiB round trip MB/s, frames", big,
                 js_api["mib_string_round_trip_mib_per_s"]["median"] * MB_PER_MIB,
                 _median(bridge, "web_worker", "mib_round_trip_mib_per_s", MB_PER_MIB),
                 _median(chromium, "frames", "mib_round_trip_mib_per_s", MB_PER_MIB),
                 _goal((f">= {GOAL_MB_S} MB/s", big >= GOAL_MB_S))))
    text = bridge["lines"]["mib_round_trip_mib_per_s"]["median"] * MB_PER_MIB
    rows.append(("1 MiB round trip MB/s, lines string", text,
                 js_api["mib_string_round_trip_mib_per_s"]["median"] * MB_PER_MIB,
                 _median(bridge, "web_worker", "mib_string_round_trip_mib_per_s", MB_PER_MIB),
                 _median(chromium, "lines", "mib_round_trip_mib_per_s", MB_PER_MIB),
                 "same data as js_api: one 1 MiB ASCII string"))

    runs = "1 run" if quick else "3 runs"
    print(f"\n{backend} window, medians of {runs} (bridge: page <-> dedicated echo service "
          "through wvwasi's bridge)")
    print(f"{'':34} {'bridge':>9} {'js_api':>9} {'bridge/':>8} {'Web':>9} {'Chromium':>9}  goal")
    print(f"{'':34} {'':>9} {'':>9} {'js_api':>8} {'Worker':>9} {'bridge':>9}")
    for label, fig, api, worker, chrome, goal in rows:
        print(f"{label:34} {_num(fig):>9} {_num(api):>9} {fig / api:>7.1f}x {_num(worker):>9} "
              f"{_num(chrome):>9}  {goal}")
    first = bridge["first_message_ms"]
    chrome_first = (chromium or {}).get("first_message_ms")
    print(f"{'new WasiWorker -> 1st message, ms':34} {first['median']:>9.1f} {'':>9} {'':>8} "
          f"{'':>9} {_num(chrome_first and chrome_first['median'], 1):>9}  the page's first "
          f"worker (also connects): {first['first']:.1f} ms")
    print(f"{'launch -> page loaded, s':34} {window['load_seconds']:>9.2f}  from App() in this "
          "process (backend imports, host, bridge, window) to the window's load event")
    print("js_api = `await pywebview.api.echo(x)`: pipelined = 100 calls in flight; MB/s = a "
          "1 MiB string. MB/s = 10^6 bytes per second each way, one round trip at a time; "
          "every 1 MiB echo is compared in full on both sides.")
    print(json.dumps({"backend": backend, "window": window, "chromium": chromium}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webview", choices=("gtk", "qt"), default="gtk",
                        help="the window's backend (default gtk)")
    parser.add_argument("--quick", action="store_true", help="fewer messages, one run each")
    parser.add_argument("--no-chromium", action="store_true",
                        help="skip the headless Chromium column")
    args = parser.parse_args()
    window = run_window(cast(Backend, args.webview), args.quick)
    chromium = None if args.no_chromium else run_page(args.quick)
    if chromium is not None and "error" in chromium:
        raise SystemExit(f"the Chromium page failed:\n{chromium['error']}")
    report(args.webview, args.quick, window, chromium)


if __name__ == "__main__":
    main()

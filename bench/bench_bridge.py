"""Page <-> service figures through the loopback bridge, in headless Chromium without Playwright.

    .venv/bin/python bench/bench_bridge.py [--quick]

Serves bench/bridge_page/ with a real ServiceHost and Bridge, opens it in `chromium --headless`
(no DevTools client attached: Playwright's slows WebSockets several times), and the page measures
echo through a `dedicated` service: `new WasiWorker` -> first message, small messages pipelined
and one at a time (`lines` and `frames`), and 1 MiB round trips (bytes in `frames`, a string in
`lines`; every echo compared in full). A plain Web Worker
echo in the same browser is the baseline. The page saves its figures through a `save` service
into a folder read here (the bridge has no route for anything else). Medians of 3 runs (1 with
--quick); asserts nothing. bench/bench_window.py runs the same page in the app window.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium_command  # noqa: E402
from projects import write_project  # noqa: E402
from wasm import SOURCE_DIR, build_fixtures  # noqa: E402

from wvwasi.runtime.bridge.server import Bridge  # noqa: E402
from wvwasi.runtime.host.service_host import ServiceHost  # noqa: E402
from wvwasi.runtime.manifest import load_manifest  # noqa: E402
from wvwasi.runtime.paths import PathContext  # noqa: E402

PAGE = Path(__file__).resolve().parent / "bridge_page"
FIXTURES = ("echo_lines", "echo_frames", "write_rw")
TIMEOUT = 600.0


def write_bench_app(tmp: Path, entry: str = "index.html") -> tuple[Path, Path]:
    """The benchmark app in `tmp/app` (page `entry` of bench/bridge_page/, services built from
    the C fixtures) and the folder its `save` service writes to: (project root, out folder)."""
    wasm = build_fixtures([SOURCE_DIR / f"{name}.c" for name in FIXTURES])
    out = tmp / "out"
    out.mkdir()
    root = write_project(tmp / "app", {
        "echo": {"source": "echo_lines", "kind": "dedicated"},
        "frames": {"source": "echo_frames", "kind": "dedicated", "ipc": "frames"},
        "save": {"source": "write_rw", "preopens": [
            {"guest": "/out", "host": str(out), "mode": "rw"}]},
    }, resolve_wasm=wasm.__getitem__, extra={"ui": {"entry": entry}})
    shutil.copytree(PAGE, root / "ui", dirs_exist_ok=True)
    return root, out


def run_page(quick: bool) -> dict:
    """Serve the benchmark page, run it in Chromium, return the figures it saved."""
    # Chromium's helper processes may still write to the profile for a moment after it exits.
    with tempfile.TemporaryDirectory(
        prefix="wvwasi-bench-bridge-", ignore_cleanup_errors=True
    ) as tmp_name:
        tmp = Path(tmp_name)
        root, out = write_bench_app(tmp)
        manifest = load_manifest(root)
        paths = PathContext.for_app(manifest, base_dirs={"CACHE": tmp / "cache",
                                                         "APPDATA": tmp / "appdata"})
        with ServiceHost(manifest, paths=paths) as host:
            bridge = Bridge(manifest, host)
            url = bridge.start() + ("#quick=1" if quick else "")
            try:
                cmd = chromium_command(url, tmp / "profile")
                browser = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
                try:
                    return _wait_for(out / "results.json", browser)
                finally:
                    browser.terminate()
                    browser.wait(10)
            finally:
                bridge.close()


def _wait_for(path: Path, browser: subprocess.Popen[bytes]) -> dict:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size:
            time.sleep(0.2)  # the service has closed the file by the time it exits
            return json.loads(path.read_text())
        if browser.poll() is not None:
            raise SystemExit(f"chromium exited ({browser.returncode}) before the page finished")
        time.sleep(0.2)
    raise SystemExit(f"the page did not finish within {TIMEOUT:g} s")


def report(results: dict) -> None:
    if "error" in results:
        raise SystemExit(f"the benchmark page failed:\n{results['error']}")
    base = results["web_worker"]
    rows = [
        ("lines", "pipelined_msgs_per_s", "msgs/s"),
        ("lines", "one_at_a_time_msgs_per_s", "msgs/s"),
        ("frames", "pipelined_msgs_per_s", "msgs/s"),
        ("frames", "one_at_a_time_msgs_per_s", "msgs/s"),
        ("frames", "mib_round_trip_mib_per_s", "MiB/s"),
        ("lines", "mib_round_trip_mib_per_s", "MiB/s, string"),
    ]
    first = results["first_message_ms"]
    print(f"new WasiWorker -> first message: {first['first']:.1f} ms (the page's first, with "
          f"connecting), then median {first['median']:.1f} ms")
    print(f"{'page <-> dedicated echo':<40} {'median':>12} {'best':>12} {'Web Worker':>12}")
    for mode, key, unit in rows:
        fig = results[mode][key]
        ref = base["mib_string_round_trip_mib_per_s" if unit.endswith("string") else key]["median"]
        label = f"{mode} {key.rsplit('_per_s', 1)[0].replace('_', ' ')} ({unit})"
        print(f"{label:<40} {fig['median']:>12,.0f} {fig['best']:>12,.0f} {ref:>12,.0f}"
              f"  ({fig['median'] / ref:.2f}x worker)")
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, one run each")
    args = parser.parse_args()
    report(run_page(args.quick))


if __name__ == "__main__":
    main()

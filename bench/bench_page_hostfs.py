"""Host folders of page-supplied modules: what one file call costs, and the transport choice.

    .venv/bin/python bench/bench_page_hostfs.py [--n N] [--calls N] [--rounds N]

Serves bench/hostfs_page/ with a real ServiceHost and Bridge (a `[page] preopens` entry lends
`/data`) and opens it in `chromium --headless` without Playwright (its DevTools client slows the
network paths measured here). The page runs bench/services/fsloop.c (N stat calls, N 64 KiB
reads with open/close, N 64 KiB pwrites on /data/file):

- as a page-supplied module on the host folder (browser engine; the Worker waits in
  `Atomics.wait` while the page relays each call over its WebSocket: the design),
- as a page-supplied module on an in-memory `vfs` file (browser engine, no host: the floor),
- as a native service under wasmtime with a real preopen (the native baseline),

and compares the two transports considered for a blocking call from a Worker, at the JavaScript
level: a synchronous XMLHttpRequest to the bridge (a small UI file; awaited fetch() for
reference) vs `Atomics.wait` on a reply the page relays over its WebSocket (here to a native
echo service and back, which adds a wasmtime stdin/stdout hop the file calls do not have).
Medians of R rounds, in the same browser and run. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
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

PAGE = Path(__file__).resolve().parent / "hostfs_page"
FSLOOP = Path(__file__).resolve().parent / "services" / "fsloop.c"
CLANG = ("clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-Wl,--strip-all")
TIMEOUT = 600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="operations per guest run")
    parser.add_argument("--calls", type=int, default=2000, help="calls per transport run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    wasm = build_fixtures([SOURCE_DIR / f"{name}.c" for name in ("echo_lines", "write_rw")])
    with tempfile.TemporaryDirectory(prefix="wvwasi-bench-hostfs-",
                                     ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        out, data = tmp / "out", tmp / "data"
        out.mkdir()
        data.mkdir()
        (data / "file").write_bytes(b"\7" * 65536)
        fsloop = tmp / "fsloop.wasm"
        subprocess.run([*CLANG, str(FSLOOP), "-o", str(fsloop)], check=True)
        root = write_project(tmp / "app", {
            "echo": {"source": "echo_lines", "kind": "dedicated"},
            "fsloop": {"source": fsloop, "preopens": [
                {"guest": "/data", "host": str(data), "mode": "rw"}]},
            "save": {"source": "write_rw", "preopens": [
                {"guest": "/out", "host": str(out), "mode": "rw"}]},
        }, resolve_wasm=wasm.__getitem__, extra={"page": {"preopens": [
            {"guest": "/data", "host": str(data), "mode": "rw"}]}})
        shutil.copytree(PAGE, root / "ui", dirs_exist_ok=True)
        (root / "ui" / "mods").mkdir()
        shutil.copyfile(fsloop, root / "ui" / "mods" / "fsloop.wasm")
        manifest = load_manifest(root)
        paths = PathContext.for_app(manifest, base_dirs={"CACHE": tmp / "cache",
                                                         "APPDATA": tmp / "appdata"})
        load = os.getloadavg()[0]
        with ServiceHost(manifest, paths=paths) as host:
            bridge = Bridge(manifest, host)
            url = bridge.start() + f"#n={args.n}&calls={args.calls}&rounds={args.rounds}"
            try:
                browser = subprocess.Popen(chromium_command(url, tmp / "profile"),
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    results = _wait_for(out / "results.json", browser)
                finally:
                    browser.terminate()
                    browser.wait(10)
            finally:
                bridge.close()
    report(results, load)


def _wait_for(path: Path, browser: subprocess.Popen[bytes]) -> dict:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size:
            time.sleep(0.2)
            return json.loads(path.read_text())
        if browser.poll() is not None:
            raise SystemExit(f"chromium exited ({browser.returncode}) before the page finished")
        time.sleep(0.2)
    raise SystemExit(f"the page did not finish within {TIMEOUT:g} s")


def report(r: dict, load: float) -> None:
    if "error" in r:
        raise SystemExit(f"the page failed:\n{r['error']}")
    print(f"host folder calls, headless Chromium without Playwright; medians of {r['rounds']} "
          f"rounds of {r['n']} operations; {os.cpu_count()} CPUs shared, load average "
          f"{load:.1f} at start, {os.getloadavg()[0]:.1f} at the end (noisy)")
    print(f"{'fsloop.c, µs per operation':<44}{'stat':>10}{'64K read':>10}{'64K write':>11}")
    for key, label in (("host", "page module, host folder (WS relay)"),
                       ("memory", "page module, in-memory vfs file"),
                       ("native", "native service, wasmtime preopen")):
        row = r[key]
        write = f"{row['write64k']:.1f}" if row["write64k"] >= 0 else "n/a"  # vfs files: ro
        print(f"{label:<44}{row['stat']:>10.1f}{row['read64k']:>10.1f}{write:>11}")
    print(f"blocking call from a Worker, µs per call ({r['calls']} calls): synchronous XHR to the "
          f"bridge {r['xhr']:.0f}; Atomics.wait on a reply relayed by the page over its "
          f"WebSocket (to a native echo service) {r['relay']:.0f}; ratio "
          f"{r['relay'] / r['xhr']:.1f}; (awaited fetch() from the Worker, for reference: "
          f"{r['fetch']:.0f})")


if __name__ == "__main__":
    main()

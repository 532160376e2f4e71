"""Services in the browser engine (a `--format web` site) vs the same services native behind the
bridge vs a plain Web Worker: one page, one browser, the same loops and checks.

    .venv/bin/python bench/bench_browser_wasi.py [--quick]

Runs bench/bridge_page/ (the page of bench/bench_bridge.py) twice in `chromium --headless`
without Playwright (its DevTools client slows WebSockets): once served by the app's bridge with
the services native under wasmtime, once as a web build (packager/web.py) where the same echo
services run in the page's Workers under wvwasi's browser engine. The page measures a
`dedicated` echo service: `new WasiWorker` -> first message, small messages pipelined and one
at a time (`lines`, `frames`), 1 MiB round trips (`frames`), and a plain Web Worker echo as the
baseline, in the same run. Medians of 3 runs (1 with --quick).

CPU-bound work: bench/services/primes.c (a sieve, no WASI calls while it computes) run to the
end in the browser engine (headless Chromium, module compiled once, timed from spawn to exit)
and under native wasmtime (module compiled once, timed from instantiate to exit; both with
the default wasmtime Config and with the service host's, which adds epoch interruption).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import wasmtime

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bridge import run_page, write_bench_app  # noqa: E402
from browser import chromium, chromium_command  # noqa: E402
from webwasi import engine_site, static_site  # noqa: E402

from wvwasi.packager.web import write_site  # noqa: E402
from wvwasi.runtime.host.modules import make_engine  # noqa: E402
from wvwasi.runtime.manifest import WEB, load_manifest  # noqa: E402

TIMEOUT = 600.0
SAVE = ("globalThis.wvwasiBenchSave = (results) => fetch('/results', "
        "{method: 'POST', body: JSON.stringify(results)});\n")


def run_web(quick: bool) -> dict[str, Any]:
    """The benchmark page as a web build (no `save` service: results are POSTed)."""
    with tempfile.TemporaryDirectory(prefix="wvwasi-bench-web-",
                                     ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        root, _ = write_bench_app(tmp)
        toml = root / "wvwasi.toml"
        text = toml.read_text()
        toml.write_text(text[:text.index("[services.save]")])
        site = write_site(load_manifest(root, platform=WEB), tmp / "site")
        (site / "save.js").write_text(SAVE)
        index = site / "index.html"
        index.write_text(index.read_text().replace(
            '<script src="bench.js">', '<script src="save.js"></script><script src="bench.js">'))
        with static_site(site) as served:
            url = served.origin + "/index.html" + ("#quick=1" if quick else "")
            browser = subprocess.Popen(chromium_command(url, tmp / "profile"),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                return served.results.get(timeout=TIMEOUT)
            finally:
                browser.terminate()
                browser.wait(10)


ROWS = [
    ("lines", "pipelined_msgs_per_s", "msgs/s"),
    ("lines", "one_at_a_time_msgs_per_s", "msgs/s"),
    ("frames", "pipelined_msgs_per_s", "msgs/s"),
    ("frames", "one_at_a_time_msgs_per_s", "msgs/s"),
    ("frames", "mib_round_trip_mib_per_s", "MiB/s"),
]


def report(web: dict[str, Any], native: dict[str, Any]) -> None:
    for name, results in (("web", web), ("native", native)):
        if "error" in results:
            raise SystemExit(f"the {name} run failed:\n{results['error']}")
    print("Chromium headless (Debian), no Playwright; 2 shared cores under load: +-30 %.")
    print("medians; 'Web Worker' = a plain JS echo Worker measured in the web run")
    print(f"{'echo through a dedicated service':<36} {'browser engine':>15} "
          f"{'native+bridge':>14} {'Web Worker':>12}")
    for mode, key, unit in ROWS:
        label = f"{mode} {key.rsplit('_per_s', 1)[0].replace('_', ' ')} ({unit})"
        w, n = web[mode][key]["median"], native[mode][key]["median"]
        base = web["web_worker"][key]["median"]
        print(f"{label:<36} {w:>15,.0f} {n:>14,.0f} {base:>12,.0f}")
    for name, results in (("browser engine", web), ("native+bridge", native)):
        first = results["first_message_ms"]
        print(f"new WasiWorker -> first message, {name}: first {first['first']:.1f} ms, "
              f"then median {first['median']:.1f} ms")
    print(json.dumps({"web": web, "native": native}))


CLANG = ("clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-Wl,--strip-all")
PRIMES = Path(__file__).resolve().parent / "services" / "primes.c"
CPU_JS = """async (runs) => {
  const bytes = await (await fetch('/wasm/primes.wasm')).arrayBuffer();
  const module = await WebAssembly.compile(bytes);
  const times = [];
  let out = '';
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = await engine.runWasi({name: 'primes', module, args: ['primes']});
    times.push((performance.now() - t0) / 1000);
    out = new TextDecoder().decode(r.stdout);
  }
  return {times, out};
}"""


def run_native_cpu(wasm: Path, runs: int, host_engine: bool) -> tuple[list[float], str]:
    """Wall times of `runs` runs and the output: a default wasmtime Engine, or the host's."""
    engine = make_engine() if host_engine else wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, str(wasm))
    times = []
    for _ in range(runs):
        store = wasmtime.Store(engine)
        if host_engine:
            store.set_epoch_deadline(1 << 40)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["primes"]
        wasi.stdout_file = str(wasm.with_suffix(".out"))
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        t0 = time.perf_counter()
        start = linker.instantiate(store, module).exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
        times.append(time.perf_counter() - t0)
    return times, wasm.with_suffix(".out").read_text()


def run_cpu(quick: bool) -> dict[str, float]:
    runs = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="wvwasi-bench-cpu-",
                                     ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        site = engine_site(tmp)
        (site / "wasm").mkdir()
        wasm = site / "wasm" / "primes.wasm"
        subprocess.run([*CLANG, str(PRIMES), "-o", str(wasm)], check=True)
        with static_site(site) as served, chromium() as browser:
            page = browser.new_page()
            page.goto(served.origin + "/engine.html")
            page.wait_for_function("globalThis.engineReady === true")
            web = page.evaluate(CPU_JS, runs)
        default, out = run_native_cpu(wasm, runs, False)
        host, _ = run_native_cpu(wasm, runs, True)
        if web["out"] != out:
            raise SystemExit(f"the browser engine printed {web['out']!r}, wasmtime {out!r}")
        return {"browser_engine_s": statistics.median(web["times"]),
                "wasmtime_default_s": statistics.median(default),
                "wasmtime_host_config_s": statistics.median(host)}


def report_cpu(cpu: dict[str, float]) -> None:
    base = cpu["wasmtime_default_s"]
    print("CPU-bound (primes.c sieve, median wall time per run):")
    for key, seconds in cpu.items():
        print(f"  {key:<24} {seconds * 1000:>8.0f} ms  ({seconds / base:.2f}x wasmtime default)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, one run each")
    args = parser.parse_args()
    web = run_web(args.quick)
    native = run_page(args.quick)
    report(web, native)
    report_cpu(run_cpu(args.quick))


if __name__ == "__main__":
    main()

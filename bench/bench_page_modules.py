"""Page-supplied modules: startup with `WasiWorker.run(url)` (fetch + compile every time) vs
`WasiWorker.register(url)` once and `service.run()` (the compiled module reused).

    .venv/bin/python bench/bench_page_modules.py [--runs N]

One headless Chromium (Debian's, via Playwright) on a `--format web` site served on loopback
with the isolation headers; the same engine runs page-supplied modules in the desktop app.
Modules: tests/fixtures/c/env_args.c (small C) and wasi-testsuite's sched_yield.wasm (~2 MB
Rust). Each figure is the median of N runs, timed in the page from the call to the resolved
result (spawn of a Worker, instantiate, run to exit). Asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
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
PAGE = """async (runs) => {
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const out = {};
  for (const url of ['mods/small.wasm', 'mods/rust.wasm']) {
    const fresh = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await WasiWorker.run(url);
      fresh.push(performance.now() - t);
    }
    let t = performance.now();
    const svc = await WasiWorker.register(url);
    const register = performance.now() - t;
    const reused = [];
    for (let i = 0; i < runs; i++) {
      t = performance.now();
      await svc.run();
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
    args = parser.parse_args()
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
        server = SiteServer(write_site(manifest, tmp / "site"))
        url = server.start()
        try:
            with chromium() as browser:
                page = browser.new_page()
                page.goto(url)
                results = page.evaluate(PAGE, args.runs)
        finally:
            server.close()
    print(f"page-supplied module startup, headless Chromium, median of {args.runs} "
          "(ms; machine shared, noisy)")
    print(f"{'module':<18}{'bytes':>10}{'run(url)':>12}{'register':>12}{'svc.run()':>12}"
          f"{'ratio':>8}")
    for name, r in results.items():
        print(f"{name:<18}{r['size']:>10}{r['fresh']:>12.1f}{r['register']:>12.1f}"
              f"{r['reused']:>12.1f}{r['fresh'] / r['reused']:>8.1f}")


if __name__ == "__main__":
    main()

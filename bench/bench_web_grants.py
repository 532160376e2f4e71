"""A picked folder on the web: what the copy a service works on costs (docs/web.md, "Folders
the user picks").

    .venv/bin/python bench/bench_web_grants.py [--runs N]

One headless Chromium (Debian's, via Playwright) on a `--format web` site served on loopback.
The folder is one of the origin private file system (a real FileSystemDirectoryHandle, as
showDirectoryPicker returns for a folder on disk; disk folders may read slower), filled with
files of random bytes. Each figure is the median of N runs of the task tests/fixtures/c/observe.c
`exit 0`, timed in the page from WasiWorker.run() to its result: without a grant (the baseline of
the same run), with the folder granted read-only (copied in), and read-write (copied in, then
compared with what the instance left; nothing changed, so nothing is written). Asserts nothing.
"""

from __future__ import annotations

import argparse
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

#: (files, bytes each) of the folders measured
FOLDERS = [(16, 1024), (256, 1024), (256, 64 << 10), (16, 4 << 20)]

PAGE = """async ([folders, runs]) => {
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const root = await navigator.storage.getDirectory();
  const time = async (options) => {
    const times = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await WasiWorker.run('task', {args: ['exit', '0'], ...options});
      times.push(performance.now() - t);
    }
    return median(times);
  };
  const out = [];
  for (const [count, size] of folders) {
    const name = `f${count}x${size}`;
    const dir = await root.getDirectoryHandle(name, {create: true});
    const bytes = new Uint8Array(size);
    for (let i = 0; i < count; i++) {
      crypto.getRandomValues(bytes.subarray(0, Math.min(size, 65536)));
      const w = await (await dir.getFileHandle(`file${i}`, {create: true})).createWritable();
      await w.write(bytes);
      await w.close();
    }
    window.showDirectoryPicker = async () => dir;
    const rw = await WasiWorker.requestDirectory({mode: 'rw'});
    const ro = await WasiWorker.requestDirectory();
    out.push({count, size, base: await time({}),
              ro: await time({grants: [{grant: ro, guest: '/d'}]}),
              rw: await time({grants: [{grant: rw, guest: '/d'}]})});
    await root.removeEntry(name, {recursive: true});
  }
  return out;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        observe = build_fixtures([ROOT / "tests" / "fixtures" / "c" / "observe.c"])["observe"]
        project = write_project(Path(tmp) / "app", {"task": {
            "source": observe, "user_grants": True,
            "limits": {"files": 100000, "files_size": "1GiB"}}}, resolve_wasm=lambda n: observe)
        server = SiteServer(write_site(load_manifest(project, platform=WEB), Path(tmp) / "site"))
        try:
            with chromium() as browser:
                page = browser.new_page()
                page.goto(server.start())
                rows = page.evaluate(PAGE, [FOLDERS, args.runs])
        finally:
            server.close()
    print(f"median of {args.runs} runs, ms (WasiWorker.run of `observe exit 0`)")
    print(f"{'files x bytes':>18} {'MiB':>6} {'no grant':>9} {'ro':>8} {'rw':>8}")
    for r in rows:
        mib = r["count"] * r["size"] / 2**20
        print(f"{r['count']:>6} x {r['size']:>9} {mib:>6.2f} {r['base']:>9.1f} {r['ro']:>8.1f} "
              f"{r['rw']:>8.1f}")


if __name__ == "__main__":
    main()

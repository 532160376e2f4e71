"""Launch figures of the Notes example in a real window, GTK/WebKitGTK vs Qt WebEngine, unfrozen.

    .venv/bin/python bench/bench_launch.py [--runs N]

Each run starts `python -m wvwasi.runtime examples/notes --self-test` on a private Xvfb screen
(services prebuilt, compile cache warm after the first run) and reads its JSON report:
- launch -> page loaded: process spawn until the window's page fired its load event;
- App.run -> page loaded: the same without interpreter start-up and imports;
- self-test total: spawn until the process exited (checks of every service and shutdown included).
Prints medians (min-max); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from xvfb import xvfb  # noqa: E402

from wvwasi.packager.services import prepare  # noqa: E402

EXAMPLE = HERE.parent / "examples" / "notes"


def launch(backend: str, display: str, home: Path) -> dict[str, float]:
    env = {**os.environ, "DISPLAY": display, "XDG_DATA_HOME": str(home / "data"),
           "XDG_CACHE_HOME": str(home / "cache")}
    spawned = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "wvwasi.runtime", str(EXAMPLE), "--self-test",
         "--webview", backend],
        env=env, capture_output=True, text=True, timeout=120,
    )
    exited = time.monotonic()
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if not report["ok"]:
        raise RuntimeError(f"{backend} self-test failed: {report}")
    return {
        "launch -> page loaded": report["loaded_monotonic"] - spawned,
        "App.run -> page loaded": report["load_seconds"],
        "self-test total": exited - spawned,
    }


def show(values: list[float]) -> str:
    return f"{statistics.median(values):6.3f} s  ({min(values):.3f}-{max(values):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if prepare(EXAMPLE, "bench") is None:
        return 1
    with xvfb() as display, tempfile.TemporaryDirectory() as tmp:
        for backend in ("gtk", "qt"):
            launch(backend, display, Path(tmp))  # warm the compile cache and the disk cache
            runs = [launch(backend, display, Path(tmp)) for _ in range(args.runs)]
            print(f"{backend} ({args.runs} runs, unfrozen)")
            for key in runs[0]:
                print(f"  {key:24} {show([r[key] for r in runs])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`onefile` launch figures: first launch (extracts) vs later launches (reuse the cache folder),
against the same app's `dir` build and against the previous design (PyInstaller's onefile
bootloader with the payload appended, what Windows/macOS still use: it unpacks the frozen
runtime into a temporary folder on every launch), and where a later launch spends its time.

    .venv/bin/python bench/bench_onefile.py [--project DIR | --yosys] [--runs N] [--no-baseline]

Builds `dir` + `onefile` (the frozen runtime and compiled services come from `--cache`, default
the tests' cache: the yosys compile, 1-2 min, happens once), then launches each with
`--self-test` under Xvfb in a fresh `XDG_CACHE_HOME`. "page loaded" = wall time minus the
self-test's time after the page loaded (an upper bound, as in bench_build.py). "to exec +
Python" = the time to the app's own usage error (`--no-such-option`: the launcher's checks, the
frozen Python's start, no payload, no window). Goal: onefile launch of the yosys app <= 1.5 s
after its first run. Wall-clock seconds on whatever else the machine is doing: compare within
one run (load average printed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import ROOT, bench_project, launch
from xvfb import xvfb

from wvwasi.packager import freeze
from wvwasi.packager.stage import append_payload
from wvwasi.runtime.manifest import load_manifest


def build(project: Path, cache: Path) -> dict[str, Path]:
    proc = subprocess.run(
        [sys.executable, "-m", "wvwasi", "build", str(project), "--json", "--format", "dir",
         "--format", "onefile"],
        env={**os.environ, "WVWASI_CACHE_DIR": str(cache), "SOURCE_DATE_EPOCH": "1700000000"},
        capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stderr}")
    return {a["format"]: Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]}


def pyinstaller_onefile(project: Path, folder: Path, dest: Path) -> Path:
    """The previous design: PyInstaller's onefile runtime (frozen into the cache once) with the
    payload appended as a zip, extracted once by runtime/frozen_main.py."""
    backend = freeze.runtime_backend(load_manifest(project).webview, "linux")
    runtime = freeze.ensure_runtime(backend, onefile=True, log=print)
    dest.parent.mkdir(parents=True)
    shutil.copyfile(runtime.onefile, dest)
    append_payload(dest, folder / "app", 1700000000)
    dest.chmod(0o755)
    return dest


def to_exec(executable: Path, env: dict[str, str]) -> float:
    """Seconds until the app's usage error: launcher + frozen Python start, nothing else."""
    start = time.perf_counter()
    proc = subprocess.run([str(executable), "--no-such-option"], env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 2:
        raise SystemExit(f"{executable}: expected the usage error, got {proc.stderr}")
    return seconds


def figures(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f} s  (runs "
            + ", ".join(f"{v:.2f}" for v in values) + ")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=Path, default=ROOT / "examples" / "notes")
    parser.add_argument("--yosys", action="store_true", help="a project with yosys.wasm")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=ROOT / "tests" / ".fixtures" / "wvwasi-cache")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the PyInstaller onefile (freezes it once: ~40 s)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wvwasi-bench-onefile-"))
    try:
        project = bench_project(work, args.project, args.yosys)
        built = build(project, args.cache.absolute())
        exe, folder = built["onefile"], built["dir"]
        (app,) = [p for p in folder.iterdir() if p.is_file()]  # beside _internal/ and app/
        print(f"project {project.name}: onefile {exe.stat().st_size / 1e6:.1f} MB, app folder "
              f"{sum(p.stat().st_size for p in folder.rglob('*') if p.is_file()) / 1e6:.1f} MB; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
        variants = {"onefile": exe}
        if not args.no_baseline:
            os.environ["WVWASI_CACHE_DIR"] = str(args.cache.absolute())
            variants["PyInstaller onefile"] = pyinstaller_onefile(
                project, folder, work / "pyinstaller" / app.name)
        print("launch -> page loaded (--self-test under Xvfb):")
        with xvfb() as display:
            for name, executable in variants.items():
                env = {**os.environ, "XDG_CACHE_HOME": str(work / name / "user-cache")}
                first = launch(str(executable), display, env, 1)[0]
                later = launch(str(executable), display, env, args.runs)
                print(f"  {name + ', first':27} {first:.2f} s (extracts into the cache)")
                print(f"  {name + ', later':27} {figures(later)}")
            floor = launch(str(app), display, {**os.environ}, args.runs)
            print(f"  {'dir (same app)':27} {figures(floor)}")
        print("to exec + Python (usage error, no window):")
        for name, executable in variants.items():
            env = {**os.environ, "XDG_CACHE_HOME": str(work / name / "user-cache2")}
            print(f"  {name + ', first':27} {to_exec(executable, env):.2f} s (extract + start)")
            later = [to_exec(executable, env) for _ in range(args.runs)]
            print(f"  {name + ', later':27} {figures(later)}")
        floor = [to_exec(app, os.environ.copy()) for _ in range(args.runs)]
        print(f"  {'dir':27} {figures(floor)}")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

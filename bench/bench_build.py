"""`wvwasi build` figures: cold build vs rebuild after a UI edit, artefact and installed sizes,
launch -> page loaded for dir / onefile / installed .deb.

    .venv/bin/python bench/bench_build.py [--project DIR] [--keep-cache]

Builds a copy of the project (default: examples/notes) with a fresh runtime cache (so the cold
build includes freezing), edits its UI, rebuilds, installs the .deb (root; removed afterwards)
and starts each output with `--self-test` under Xvfb; `load_seconds` in its report is launch ->
page loaded. Goals: rebuild <= 3 s and >= 10x faster than cold; .deb <= 15 MB (GTK).
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

from xvfb import xvfb  # noqa: E402

FORMATS = ("dir", "onefile", "tar.gz", "deb", "rpm")


def build(project: Path, env: dict[str, str], *formats: str) -> tuple[float, dict]:
    args = [a for f in formats for a in ("--format", f)]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "wvwasi", "build", str(project), "--json", *args],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stderr}")
    return seconds, json.loads(proc.stdout)


def launch(executable: str, display: str, runs: int = 3) -> list[float]:
    """Launch -> page loaded, per run.

    The self-test reports `load_seconds` from the app's start (after the interpreter, imports and
    a onefile's unpacking) and `seconds` for its whole run; the process's wall time minus the
    part after the page loaded (`seconds - load_seconds`) is launch -> page loaded plus the
    shutdown, an upper bound."""
    loads = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([executable, "--self-test"], env={**os.environ, "DISPLAY": display},
                              capture_output=True, text=True, timeout=120)
        wall = time.perf_counter() - start
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        report = json.loads(lines[-1]) if lines else {}
        if not report.get("ok"):
            raise SystemExit(f"{executable} --self-test failed: {proc.stdout}{proc.stderr}")
        loads.append(wall - (report["seconds"] - report["load_seconds"]))
    return loads


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=Path, default=ROOT / "examples" / "notes")
    parser.add_argument("--keep-cache", action="store_true",
                        help="reuse the user's runtime cache (no cold freeze)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wvwasi-bench-build-"))
    try:
        project = work / "project"
        shutil.copytree(args.project, project, ignore=shutil.ignore_patterns("dist", "build"))
        env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
        if not args.keep_cache:
            env["WVWASI_CACHE_DIR"] = str(work / "cache")

        cold, report = build(project, env, *FORMATS)
        index = project / "ui" / "index.html"
        index.write_text(index.read_text() + "\n<!-- edited -->\n")
        warm, _ = build(project, env, "dir")
        steps = {s["step"]: s["seconds"] for s in report["steps"]}
        print(f"cold build ({', '.join(FORMATS)}): {cold:6.1f} s  "
              f"(freeze {steps.get('freeze', 0):.1f} s)")
        print(f"rebuild after a UI edit (dir):      {warm:6.2f} s  -> {cold / warm:.0f}x faster "
              f"(goal <= 3 s, >= 10x)")
        cold_dir, _ = build(project, {**env, "WVWASI_CACHE_DIR": str(work / "cache2")}, "dir")
        print(f"cold build (dir only):              {cold_dir:6.1f} s  -> rebuild "
              f"{cold_dir / warm:.0f}x faster")

        print("\nartefacts:")
        paths = {a["format"]: Path(a["path"]) for a in report["artefacts"]}
        for a in report["artefacts"]:
            print(f"  {a['format']:8} {a['size'] / 1e6:7.1f} MB  built in {a['seconds']:5.1f} s"
                  f"  {Path(a['path']).name}")
        deb = paths["deb"]
        installed = int(subprocess.run(["dpkg-deb", "-f", deb, "Installed-Size"],
                                       capture_output=True, text=True, check=True).stdout)
        print(f"  .deb {deb.stat().st_size / 1e6:.1f} MB (goal <= 15 MB), installed "
              f"{installed / 1024:.1f} MB")

        slug = deb.name.split("_")[0]
        with xvfb() as display:
            print("\nlaunch -> page loaded, upper bound (3 runs):")
            for name, exe in (("dir", str(paths["dir"] / slug)),
                              ("onefile", str(paths["onefile"]))):
                print(f"  {name:14} " + "  ".join(f"{s:.2f} s" for s in launch(exe, display)))
            subprocess.run(["dpkg", "-i", str(deb)], check=True, capture_output=True)
            try:
                loads = launch(f"/usr/bin/{slug}", display)
                print("  installed .deb " + "  ".join(f"{s:.2f} s" for s in loads))
                print(f"  installed tree /opt/{slug}: {tree_size(Path('/opt', slug)) / 1e6:.1f} MB")
            finally:
                subprocess.run(["dpkg", "-r", slug], check=True, capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

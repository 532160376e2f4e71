"""Native compute ratio: the same C program natively and as a service under the service host.

    .venv/bin/python bench/bench_compute.py [--runs 5]

bench/compute/sha256.c (SHA-256 over 64 MiB: CPU-bound) and bench/compute/alloc.c (binary
trees and a malloc/free churn: allocation-heavy) are built with Debian's clang -O2, natively and
for wasm32-wasi (wasi-libc's dlmalloc). Native: wall time of the process. Service host: wall
time of `ServiceHost.run_task` (instantiate + run + collect stdout) after one warm-up run, so
the module is compiled already (as with a shipped precompiled artefact). Both must print the
same result. Prints medians of `--runs` runs, alternating native and wasm so that both see the
same machine load, and the ratio (goal <= 1.5x). Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from wvwasi.runtime.host.service_host import ServiceHost
from wvwasi.runtime.manifest import manifest_for_wasm

SOURCES = Path(__file__).resolve().parent / "compute"
PROGRAMS = ("sha256", "alloc")
FLAGS = ("-O2", "-Wall", "-Werror")
WASI = ("--target=wasm32-wasi", "--sysroot=/usr", "-Wl,--strip-all")


def build(name: str, out: Path) -> tuple[Path, Path]:
    """(native executable, .wasm) of bench/compute/NAME.c."""
    source = SOURCES / f"{name}.c"
    native, wasm = out / name, out / f"{name}.wasm"
    subprocess.run(["clang", *FLAGS, str(source), "-o", str(native)], check=True)
    subprocess.run(["clang", *FLAGS, *WASI, str(source), "-o", str(wasm)], check=True)
    return native, wasm


def timed(fn: object) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    out = fn()  # type: ignore[operator]
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"native (clang {' '.join(FLAGS)}) vs the service host (wasm32-wasi, same flags), "
          f"seconds, median of {args.runs}:")
    print(f"{'program':<10} {'native':>8} {'host':>8} {'ratio':>7}")
    with tempfile.TemporaryDirectory(prefix="wvwasi-bench-compute-") as tmp:
        for name in PROGRAMS:
            native, wasm = build(name, Path(tmp))
            with ServiceHost(manifest_for_wasm(wasm)) as host:
                service = next(iter(host.manifest.services))

                def run_native(native: Path = native) -> bytes:
                    return subprocess.run([str(native)], capture_output=True,
                                          check=True).stdout

                def run_wasm(host: ServiceHost = host, service: str = service) -> bytes:
                    result = host.run_task(service)
                    if result.exit_code != 0:
                        raise SystemExit(f"{service}.wasm failed: {result.error} "
                                         f"{result.stderr.decode()}")
                    return result.stdout

                expect = run_native()
                if run_wasm() != expect:  # also the warm-up (compiles the module)
                    raise SystemExit(f"{name}: native and wasm print different results")
                times: dict[str, list[float]] = {"native": [], "wasm": []}
                for _ in range(args.runs):
                    for kind, fn in (("native", run_native), ("wasm", run_wasm)):
                        seconds, out = timed(fn)
                        if out != expect:
                            raise SystemExit(f"{name} ({kind}): a different result")
                        times[kind].append(seconds)
            n, w = statistics.median(times["native"]), statistics.median(times["wasm"])
            print(f"{name:<10} {n:>8.2f} {w:>8.2f} {w / n:>6.2f}x")


if __name__ == "__main__":
    main()

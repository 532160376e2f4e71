"""How long a module wasmtime cannot compile takes to be rejected: validation vs a full compile.

    .venv/bin/python bench/bench_validate.py [--functions N]

Builds a module of N ordinary functions (each a few hundred instructions) plus one using legacy
exception handling (`try`/`catch`), which wasmtime 50 rejects by default. Times
`modules.validate()` (what `check`, `exec`, `build` and the host now run first) against
`wasmtime.Module()` (what used to find the problem), median of 3 each, and prints the ratio.
Asserts nothing; the figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import wasmtime

from wvwasi.runtime.host.modules import WASMTIME_VERSION, WasmLoadError, make_engine, validate

BODY = "\n".join(
    f"    local.get 0 i32.const {i} i32.add i32.const 7 i32.mul local.set 0" for i in range(60)
)


def module_wat(functions: int) -> str:
    funcs = "\n".join(
        f"  (func (param i32) (result i32)\n{BODY}\n    local.get 0)" for _ in range(functions)
    )
    return f"""(module
  (tag $e)
  (memory (export "memory") 1)
{funcs}
  (func (export "_start") try throw $e catch $e end))"""


def timed(run) -> float:
    started = time.perf_counter()
    try:
        run()
    except (WasmLoadError, wasmtime.WasmtimeError):
        pass
    else:
        raise SystemExit("the module was accepted: the benchmark needs one that fails")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--functions", type=int, default=4000)
    args = parser.parse_args()
    data = bytes(wasmtime.wat2wasm(module_wat(args.functions)))
    engine = make_engine()
    path = Path("legacy.wasm")
    val = [timed(lambda: validate(engine, data, path)) for _ in range(3)]
    comp = [timed(lambda: wasmtime.Module(engine, data)) for _ in range(3)]
    v, c = statistics.median(val), statistics.median(comp)
    print(f"module: {len(data) / 1e6:.1f} MB, {args.functions + 1} functions, legacy `try` in "
          f"the last; wasmtime {WASMTIME_VERSION}")
    print(f"validate (reject):      median {v * 1000:8.1f} ms  runs {[round(x, 3) for x in val]}")
    print(f"full compile (reject):  median {c * 1000:8.1f} ms  runs {[round(x, 3) for x in comp]}")
    print(f"compile / validate: {c / v:.1f}x")


if __name__ == "__main__":
    main()

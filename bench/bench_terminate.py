"""Host bounds under hostile services: terminate() latency per guest state, memory under output
floods, and an honest worker's round trip beside stderr floods.

    .venv/bin/python bench/bench_terminate.py [--runs N]

Uses the C test fixtures (tests/fixtures/c, built by tests/wasm.py). Prints figures and ratios
against a baseline measured in the same run; asserts nothing. Baselines: terminate of a guest
spinning in wasm (stopped by the epoch check alone), and the echo round trip with no flood.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from projects import write_project
from wasm import build_fixtures

from wvwasi.runtime.host.events import Event
from wvwasi.runtime.host.service_host import ServiceHost
from wvwasi.runtime.manifest import load_manifest

SERVICES: dict[str, dict[str, Any]] = {
    "spin": {"source": "loop", "kind": "dedicated"},
    "sleep": {"source": "sleeper", "kind": "dedicated", "args": ["sleep", "60"]},
    "block": {"source": "blockread", "kind": "dedicated"},
    "flood": {"source": "flood", "kind": "dedicated", "ipc": "stream", "args": ["100000"]},
    "errflood": {"source": "stderr_flood", "kind": "dedicated"},
    "nonl": {"source": "nonl_flood", "kind": "dedicated"},
    "nonl_err": {"source": "nonl_flood", "kind": "dedicated", "args": ["err"]},
    "echo": {"source": "echo_lines", "kind": "dedicated"},
}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def terminate_ms(host: ServiceHost, name: str, on_event: Callable[[Event], None] | None,
                 runs: int) -> list[float]:
    """terminate() -> wait() returning, once the guest is in its state (first event + 100 ms)."""
    times = []
    for _ in range(runs):
        inst = host.spawn(name, on_event=on_event)
        if on_event is None:
            inst.recv(30)
        time.sleep(0.1)
        t = time.perf_counter()
        inst.terminate()
        assert inst.wait(30) is not None
        times.append((time.perf_counter() - t) * 1000)
    return times


def echo_ms(inst: Any, n: int = 200) -> float:
    """Median round trip of a short line through a dedicated echo instance."""
    times = []
    for i in range(n):
        t = time.perf_counter()
        inst.send(f"ping {i}")
        while inst.recv(30).data != f"ping {i}":
            pass
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    fixtures = build_fixtures()
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    port = silent.getsockname()[1]
    services = {**SERVICES, "netrecv": {
        "source": "net_client", "kind": "dedicated", "net": {"connect": [f"127.0.0.1:{port}"]},
        "args": ["connect", "127.0.0.1", str(port), "recv", "60000"]}}
    project = write_project(Path(tempfile.mkdtemp()) / "app", services,
                            resolve_wasm=lambda n: fixtures[n])
    host = ServiceHost(load_manifest(project)).start()
    for name in services:  # compile everything first
        inst = host.spawn(name)
        inst.terminate()
        inst.wait(30)
    print(f"# 2-core machine shared with other jobs: figures are noisy. runs={runs}")
    sink = lambda _e: None  # noqa: E731 - the app reads (and drops) every event
    cases = [
        ("spinning in wasm (baseline: epoch check)", "spin", None),
        ("sleeping in sleep(60) / poll_oneoff", "sleep", None),
        ("blocked reading stdin", "block", None),
        ("blocked writing stdout, app not reading", "flood", None),
        ("flooding stderr, app reading every line", "errflood", sink),
        ("blocked in wvwasi_net recv (60 s timeout)", "netrecv", None),
    ]
    baseline = None
    print("terminate() -> Exited        p50 ms   max ms   vs baseline p50")
    for label, name, cb in cases:
        t = terminate_ms(host, name, cb, runs)
        p50 = statistics.median(t)
        baseline = baseline or p50
        print(f"  {label:42s} {p50:7.2f} {max(t):8.2f}   x{p50 / baseline:.2f}")

    threads0, fds0, rss0 = threading.active_count(), fds(), rss_mb()
    t = time.perf_counter()
    exited = host.spawn("nonl").wait(60)
    print(f"stdout line without newline: ended in {time.perf_counter() - t:.2f} s with "
          f"{exited.error.kind if exited and exited.error else exited}; "
          f"RSS {rss0:.0f} -> {rss_mb():.0f} MB")
    for name, label in (("nonl_err", "stderr without newline, app reading"),
                        ("errflood", "stderr lines, app NOT reading (bounded queue)")):
        rss0 = rss_mb()
        inst = host.spawn(name, on_event=sink if name == "nonl_err" else None)
        time.sleep(3)
        peak = rss_mb()
        inst.terminate()
        inst.wait(30)
        print(f"{label}: 3 s, RSS {rss0:.0f} -> {peak:.0f} MB")
    print(f"threads {threads0} -> {threading.active_count()}, fds {fds0} -> {fds()} after floods")

    echo = host.spawn("echo")
    idle = echo_ms(echo)
    floods = [host.spawn("errflood", on_event=sink) for _ in range(2)]
    time.sleep(0.3)
    busy = echo_ms(echo)
    for f in floods:
        f.terminate()
        f.wait(30)
    print(f"echo round trip: idle {idle:.2f} ms (baseline), beside 2 stderr floods "
          f"{busy:.2f} ms (x{busy / idle:.1f})")
    host.close()


if __name__ == "__main__":
    main()

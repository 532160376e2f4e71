"""What glibc malloc settings cost and keep (runtime/bridge/memory.py): big-buffer copies and
the memory left in the process after a flood of big buffers is freed, one fresh process per
setting (mallopt is process-wide and cannot be undone), settings alternated, several rounds.

    .venv/bin/python bench/bench_mallopt.py [--rounds 5] [--mb 15]

Settings:
  default      glibc as it comes (the mmap threshold rises with each big block freed)
  mmap4        what the bridge used: M_MMAP_THRESHOLD 4 MiB + M_TRIM_THRESHOLD 4 MiB
  trim-after   glibc as it comes, `malloc_trim(0)` once the flood is freed (as when a page leaves)
  heap-trim4   M_MMAP_THRESHOLD 32 MiB (glibc's largest: big buffers come from the heap) +
               M_TRIM_THRESHOLD 4 MiB (freed heap tops above 4 MiB go back)
  heap-trim32  M_MMAP_THRESHOLD 32 MiB + M_TRIM_THRESHOLD 32 MiB (heap tops up to 32 MiB kept)

Copy: `bytes(buffer)` of an MB-sized buffer, freed again (the bridge's copies of a task's
output), GiB/s; also 1 MiB. Kept: RSS after four floods (60 buffers of MB each, built on 4
threads, with small objects allocated between them as a live page does), all freed, minus RSS
before. Linux/glibc only. Wall-clock medians on a shared machine: load average printed.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import statistics
import subprocess
import sys
import threading
import time

SETTINGS = ("default", "mmap4", "trim-after", "heap-trim4", "heap-trim32")


def libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def copy_rate(size: int, total: int) -> float:
    source = bytearray(os.urandom(1 << 20)) * (size >> 20)
    rounds = max(3, total // size)
    start = time.perf_counter()
    for _ in range(rounds):
        copy = bytes(source)
        del copy
    return rounds * size / (time.perf_counter() - start) / 2**30


def flood(size: int) -> None:
    """60 big buffers made on 4 threads with small live objects between them, then freed."""
    held: list[bytes] = []
    small: list[bytes] = []
    lock = threading.Lock()
    source = bytearray(os.urandom(1 << 20)) * (size >> 20)

    def work() -> None:
        for i in range(15):
            buffer = bytes(source)
            with lock:
                held.append(buffer)
                small.append(b"%d" % i * 100)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held.clear()


def child(setting: str, mb: int) -> dict[str, float]:
    c = libc()
    mmap, trim = {"mmap4": (4, 4), "heap-trim4": (32, 4), "heap-trim32": (32, 32)}.get(
        setting, (0, 0))
    if mmap:
        c.mallopt(-3, mmap << 20)  # M_MMAP_THRESHOLD
        c.mallopt(-1, trim << 20)  # M_TRIM_THRESHOLD
    base = rss()
    for _ in range(4):
        flood(mb << 20)
        if setting == "trim-after":
            c.malloc_trim(0)
    kept = rss() - base
    return {"copy_big": copy_rate(mb << 20, 256 << 20), "copy_1m": copy_rate(1 << 20, 256 << 20),
            "kept_mb": kept / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mb", type=int, default=15)
    parser.add_argument("--child", choices=SETTINGS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.mb)))
        return
    load = [os.getloadavg()[0]]
    results: dict[str, list[dict[str, float]]] = {s: [] for s in SETTINGS}
    for _ in range(args.rounds):
        for setting in SETTINGS:
            out = subprocess.run([sys.executable, __file__, "--child", setting, "--mb",
                                  str(args.mb)], capture_output=True, text=True, check=True)
            results[setting].append(json.loads(out.stdout))
    load.append(os.getloadavg()[0])
    print(json.dumps({"rounds": args.rounds, "mb": args.mb,
                      "load_average": [round(x, 1) for x in load]}))
    for setting, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        kept = [r["kept_mb"] for r in runs]
        print(f"{setting:11s} copy {args.mb} MiB {med['copy_big']:5.2f} GiB/s, "
              f"1 MiB {med['copy_1m']:5.2f} GiB/s; kept after 4 floods {med['kept_mb']:6.1f} MiB "
              f"(range {min(kept):.0f}-{max(kept):.0f})")


if __name__ == "__main__":
    main()

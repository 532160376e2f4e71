"""What checking an extracted onefile app costs per launch: the Linux launcher's marker (names,
types, modes and sizes of every file: `ls -lnR | awk | cksum`, what it does) against a full
check of every byte (`sha256sum -c` of a listing carried in the launcher, the alternative the
design rejected), and the Windows/macOS payload check in `frozen_main` (SHA-256 of every payload
file against the archive's listing, what it does).

    .venv/bin/python bench/bench_code_check.py [--folder DIR] [--extra-mb N] [--runs N]

`--folder`: an app folder as extracted (default: the frozen GTK runtime in the tests' build
cache, tests/.fixtures/wvwasi-cache/runtime/*/onedir: what every onefile extracts besides its
payload). `--extra-mb`: add a payload file of that size (a big `.cwasm`: yosys' is 170 MB).
Warm page cache (a later launch right after an earlier one); wall-clock medians on whatever
else the machine is doing (load average printed): compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from wvwasi.runtime import frozen_main

ROOT = Path(__file__).resolve().parent.parent
FINGERPRINT = r"""(cd "$1" && LC_ALL=C ls -lnR .) |
    awk '/^total /{next} {$2=$3=$4=$6=$7=$8=""; if ($1 ~ /^d/) $5=""; print}' | cksum"""


def default_folder() -> Path:
    found = sorted((ROOT / "tests" / ".fixtures" / "wvwasi-cache" / "runtime").glob("*/onedir"))
    if not found:
        raise SystemExit("no frozen runtime in the tests' cache: pass --folder DIR")
    return found[-1]


def timed(runs: int, step: Callable[[], object]) -> list[float]:
    step()  # warm the page cache
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        out.append(time.perf_counter() - start)
    return out


def sh(script: str, *args: str) -> None:
    subprocess.run(["sh", "-c", script, "sh", *args], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--extra-mb", type=int, default=0)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    source = args.folder or default_folder()
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "x" / "app-folder"
        shutil.copytree(source, app, symlinks=True)
        payload = app / "app"
        payload.mkdir(exist_ok=True)
        if args.extra_mb:
            (payload / "big.cwasm").write_bytes(os.urandom(args.extra_mb << 20))
        (payload / "ui").mkdir(exist_ok=True)
        (payload / "ui" / "index.html").write_text("<p>bench</p>\n")
        files = [p for p in app.rglob("*") if p.is_file() and not p.is_symlink()]
        size = sum(p.stat().st_size for p in files)
        listing = Path(tmp) / "SHA256SUMS"
        with open(listing, "w") as out:
            subprocess.run(["sha256sum", *map(str, files)], check=True, stdout=out)

        # the Windows/macOS case: the payload folder only, against the archive's listing
        archive_path = Path(tmp) / "payload.zip"
        with zipfile.ZipFile(archive_path, "w") as z:
            for p in payload.rglob("*"):
                if p.is_file():
                    z.write(p, f"app/{p.relative_to(payload).as_posix()}")
        with zipfile.ZipFile(archive_path) as archive:
            cache = Path(tmp) / "code"
            target = frozen_main.extract_cached(archive, cache)
            sizes = {i.filename: i.file_size for i in archive.infolist() if not i.is_dir()}
            digests = frozen_main.expected_digests(archive)
            payload_mb = sum(sizes.values()) / 2**20

            marker = timed(args.runs, lambda: sh(FINGERPRINT, str(app.parent)))
            full = timed(args.runs, lambda: sh('sha256sum --quiet -c "$1"', str(listing)))
            payload_check = timed(args.runs, lambda: frozen_main._intact(target, sizes, digests))
    load = os.getloadavg()[0]
    med = statistics.median
    print(json.dumps({"folder": str(source), "files": len(files), "mb": round(size / 2**20, 1),
                      "payload_mb": round(payload_mb, 1), "load_average": round(load, 1)}))
    print(f"launcher marker (names/types/modes/sizes): {med(marker) * 1000:8.1f} ms")
    print(f"full sha256sum -c of every file:            {med(full) * 1000:8.1f} ms  "
          f"({med(full) / med(marker):.1f}x the marker)")
    print(f"frozen_main payload check ({payload_mb:.1f} MB):     "
          f"{med(payload_check) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()

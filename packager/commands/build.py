"""`wvwasi build [DIR] [--format F ...] [--out DIR] [--json]`: package the app (see build.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from wvwasi.packager.formats import FORMATS
from wvwasi.packager.tools import BuildError
from wvwasi.runtime.manifest import PLATFORMS

if TYPE_CHECKING:
    from rich.console import Console

    from wvwasi.packager.build import BuildReport


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `build` subcommand."""
    p = sub.add_parser(
        "build",
        help="build the app's executables, archives and installers",
        description="Build services, precompile them, stage the app on the cached frozen "
        "runtime and package each format into the output folder (with SHA256SUMS and "
        "build-report.json). SOURCE_DATE_EPOCH makes tar.gz, zip, deb and rpm reproducible.",
    )
    p.add_argument("dir", nargs="?", default=".", type=Path, help="project folder (default: .)")
    p.add_argument("-f", "--format", dest="formats", action="append", default=[],
                   metavar="FORMAT", help=f"a format to build, repeatable ({', '.join(FORMATS)}); "
                   "default: [bundle] formats, else the OS's usual ones")
    p.add_argument("-o", "--out", type=Path, help="output folder (default: DIR/dist)")
    p.add_argument("--platform", choices=PLATFORMS,
                   help="target OS (default: this one; another OS needs --runtime, except windows "
                   "from Linux: see --windows-python)")
    p.add_argument("--runtime", type=Path, metavar="DIR",
                   help="use a runtime frozen elsewhere (DIR/onedir, DIR/onefile) instead of "
                   "freezing here")
    p.add_argument("--windows-python", type=Path, metavar="PATH",
                   help="--platform windows on Linux without --runtime: freeze the runtime under "
                   "Wine with this Windows CPython (python.org's embeddable zip for amd64, or a "
                   "folder with python.exe; default: $WVWASI_WINDOWS_PYTHON)")
    p.add_argument("--no-service-build", dest="build_services", action="store_false",
                   help="do not run the services' build.command (use the .wasm as they are)")
    p.add_argument("--json", action="store_true", help="print the build report as JSON")
    p.set_defaults(run=run)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _summary(console: Console, report: BuildReport) -> None:
    console.print(f"built {report.app} {report.version} for {report.platform}-{report.arch} "
                  f"in {report.seconds:.1f}s -> {report.out}", highlight=False)
    for a in report.artefacts:
        console.print(f"  {a.format:9} {a.path.name:52} {_size(a.size):>9}", highlight=False)


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    if not value.isdigit():
        raise BuildError("SOURCE_DATE_EPOCH", f"expected seconds since 1970, got {value!r}")
    return int(value)


def run(args: argparse.Namespace) -> int:
    """Build; one `error:` line naming the failed step (exit 1) on failure."""
    from rich.console import Console

    from wvwasi.packager.build import BuildRequest, build
    from wvwasi.packager.progress import RichProgress

    console = Console(stderr=True)
    progress = RichProgress(console)
    try:
        request = BuildRequest(
            project=args.dir,
            formats=tuple(dict.fromkeys(args.formats)),
            out=args.out,
            platform=args.platform,
            runtime=args.runtime,
            source_date_epoch=_source_date_epoch(),
            build_services=args.build_services,
            windows_python=args.windows_python,
        )
        report = build(request, progress)
    except BuildError as e:
        progress.close(ok=False)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BaseException:
        progress.close(ok=False)
        raise
    progress.close(ok=True)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _summary(console, report)
    return 0

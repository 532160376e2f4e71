"""`wvwasi ci github [DIR]`: write .github/workflows/release.yml, a GitHub Actions workflow that
builds the services once on Linux, packages and self-tests the app on Linux, Windows and macOS
runners (the MSI on Linux from the Windows runtime), and attaches the packages with one
SHA256SUMS to the release of a `v*` tag once every job has passed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wvwasi.packager.workflow import write_workflow
from wvwasi.runtime.manifest import ManifestError, load_manifest


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `ci` subcommand."""
    p = sub.add_parser("ci", help="write a CI workflow that builds and releases the app",
                       description=__doc__.split(":", 1)[1].strip())
    p.add_argument("provider", choices=("github",))
    p.add_argument("dir", nargs="?", default=".", type=Path, help="project folder (default: .)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.dir, platform="linux")
        out = write_workflow(manifest, args.dir)
    except (ManifestError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0

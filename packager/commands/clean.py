"""`wvwasi clean [--runtime] [--compiled]`: empty wvwasi's caches (all by default).

`--runtime`: frozen runtimes and the compressed package parts made from them; `--compiled`:
compiled services, wvwasi's shared cache and each app's own (`wvwasi info` lists them).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `clean` subcommand."""
    p = sub.add_parser("clean", help="empty the caches (frozen runtimes, compiled services)",
                       description=__doc__)
    p.add_argument("--runtime", action="store_true",
                   help="only frozen runtimes and package parts")
    p.add_argument("--compiled", action="store_true",
                   help="only compiled services (shared and per-app compile caches)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from wvwasi.packager.caches import clean

    both = not (args.runtime or args.compiled)
    freed = clean(runtime=both or args.runtime, compiled=both or args.compiled)
    print(f"freed {freed / 1e6:.1f} MB")
    return 0

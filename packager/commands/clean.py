"""`wvwasi clean`: empty wvwasi's cache (frozen runtimes, compiled services)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `clean` subcommand."""
    p = sub.add_parser("clean", help="empty the cache (frozen runtimes)", description=__doc__)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from wvwasi.packager.freeze import cache_dir, clean_cache

    freed = clean_cache()
    print(f"emptied {cache_dir()} ({freed / 1e6:.1f} MB freed)")
    return 0

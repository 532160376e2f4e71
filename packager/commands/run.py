"""`wvwasi run [DIR]`: build what is stale, then run the project in its window, from source."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from wvwasi.packager.services import prepare
from wvwasi.runtime.manifest import Webview


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `run` subcommand."""
    p = sub.add_parser(
        "run",
        help="run the app from source in its window",
        description="Run each service's build.command whose .wasm is missing or older than its "
        "build.watch files, then open the app window. Closing the window (or Ctrl+C) stops it.",
    )
    add_common(p)
    p.add_argument("--self-test", action="store_true",
                   help="start every service from the page, print a JSON report and exit")
    p.set_defaults(run=run)


def add_common(p: argparse.ArgumentParser) -> None:
    """The arguments `run` and `dev` share."""
    p.add_argument("dir", nargs="?", default=".", type=Path, help="project folder (default: .)")
    p.add_argument("--webview", choices=get_args(Webview),
                   help="Linux webview backend, overriding [target.linux] webview")


def run(args: argparse.Namespace) -> int:
    """Build, then run until the window closes; 2 if the project cannot start."""
    manifest = prepare(args.dir, "run")
    if manifest is None:
        return 2
    from wvwasi.packager.caches import compiled_dir
    from wvwasi.runtime.app import run_app

    return run_app(manifest, self_test=args.self_test, backend=args.webview,
                   compile_cache=compiled_dir())

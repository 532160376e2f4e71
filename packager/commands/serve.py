"""`wvwasi serve [DIR] [--port N]`: the app's UI and services for any browser, without a window."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from wvwasi.runtime.manifest import WEB, ManifestError, load_manifest
from wvwasi.runtime.stopping import INTERRUPTED, stop_on_signals, wait


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    p = sub.add_parser(
        "serve",
        help="serve the app's UI and services to a browser (no window)",
        description="Start the app's services and its loopback bridge without a window, and "
        "print the URL to open (it carries this run's secret). Ctrl+C stops.",
    )
    p.add_argument("dir", nargs="?", default=".", type=Path, help="project folder (default: .)")
    p.add_argument("--port", type=int, default=0,
                   help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--web", action="store_true",
                   help="serve the app as the static site `wvwasi build --format web` makes: "
                   "services run in the browser (docs/web.md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 2 for a bad manifest, 1 if the port cannot be bound, 130
    when stopped before it served. The signals stop it from here on: a Ctrl+C while services
    and bridge start up shuts down what started, with no traceback."""
    if args.web:
        return _serve_web(args)
    with stop_on_signals() as stop:
        try:
            manifest = load_manifest(args.dir)
        except ManifestError as e:
            print(f"wvwasi serve: {e}", file=sys.stderr)
            return 2
        if not 0 <= args.port <= 65535:
            print(f"wvwasi serve: --port must be 0-65535, got {args.port}", file=sys.stderr)
            return 2
        from wvwasi.packager.caches import compiled_dir
        from wvwasi.runtime.app import App

        app = App(manifest, headless=True, compile_cache=compiled_dir(), port=args.port)
        try:
            return app.serve(hint="Open that URL in a browser (it carries this run's secret). "
                             "Folder pickers need the app window (wvwasi run). Ctrl+C stops.",
                             stdin_stops=False, stop=stop)
        except OSError as e:
            print(f"wvwasi serve: {e}", file=sys.stderr)
            return 1


def _serve_web(args: argparse.Namespace) -> int:
    """`--web`: write the static site to a temporary folder and serve it with its headers."""
    try:
        manifest = load_manifest(args.dir, platform=WEB)
    except ManifestError as e:
        print(f"wvwasi serve: {e}", file=sys.stderr)
        return 2
    from wvwasi.packager.web import SiteServer, web_problems, write_site

    problems = web_problems(manifest, manifest.path)
    problems += [f"{manifest.path}: services.{n}.source: {s.source} does not exist (build it "
                 "first: wvwasi build)" for n, s in manifest.services.items()
                 if not s.source.is_file()]
    for problem in problems:
        print(f"wvwasi serve: {problem}", file=sys.stderr)
    if problems:
        return 2
    with stop_on_signals() as stop, tempfile.TemporaryDirectory(prefix="wvwasi-web-") as temp:
        site = write_site(manifest, Path(temp) / "site")
        try:
            server = SiteServer(site, args.port)
        except OSError as e:
            print(f"wvwasi serve: {e}", file=sys.stderr)
            return 1
        url = server.start()
        try:
            if stop.is_set():  # Ctrl+C while the site was written
                return INTERRUPTED
            print(f"Serving {manifest.app.name} as a web site at {url}", flush=True)
            print("Services run in the browser's Workers. Ctrl+C stops.", flush=True)
            wait(stop)
        finally:
            server.close()
    print("Stopped.", flush=True)
    return 0

"""`wvwasi run [DIR]`: build what is stale, then run the project in its window, from source."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

from wvwasi.runtime.manifest import Manifest, ManifestError, Service, Webview, load_manifest


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


def watched_files(service: Service) -> set[Path]:
    """The files matching the service's `build.watch` globs now."""
    if service.build is None:
        return set()
    workdir = service.build.workdir
    return {p.resolve() for pattern in service.build.watch for p in workdir.glob(pattern)
            if p.is_file()}


def is_stale(service: Service, manifest: Path | None = None) -> bool:
    """Whether the service's .wasm is missing or older than one of its watched files, or than
    the `manifest` file (its build.command may have changed)."""
    if service.build is None:
        return False
    try:
        built = service.source.stat().st_mtime
    except FileNotFoundError:
        return True
    inputs = [*watched_files(service), *([manifest] if manifest else [])]
    return any(p.stat().st_mtime > built for p in inputs)


def build_service(service: Service) -> bool:
    """Run the service's build.command, its output shown as it comes; whether it succeeded."""
    assert service.build is not None
    print(f"wvwasi: building services.{service.name}: {service.build.command}", flush=True)
    try:
        code = subprocess.run(service.build.command, shell=True, cwd=service.build.workdir,
                              check=False).returncode
    except OSError as e:
        print(f"wvwasi: services.{service.name}: cannot run build.command: {e}", file=sys.stderr)
        return False
    if code != 0:
        print(f"wvwasi: services.{service.name}: build.command exited with status {code}",
              file=sys.stderr)
        return False
    if not service.source.is_file():
        rel = os.path.relpath(service.source, Path.cwd())
        print(f"wvwasi: services.{service.name}: build.command did not create {rel}",
              file=sys.stderr)
        return False
    return True


def prepare(dir: Path, command: str) -> Manifest | None:
    """The manifest with every stale service rebuilt; None (after saying why) on failure."""
    try:
        manifest = load_manifest(dir)
    except ManifestError as e:
        print(f"wvwasi {command}: {e}", file=sys.stderr)
        return None
    failed = [s.name for s in manifest.services.values() if is_stale(s) and not build_service(s)]
    missing = [s.name for s in manifest.services.values()
               if s.name not in failed and not s.source.is_file()]
    for name in missing:
        rel = os.path.relpath(manifest.services[name].source, manifest.root)
        print(f"wvwasi {command}: services.{name}.source: {rel} does not exist and there is no "
              "build.command to create it", file=sys.stderr)
    return None if failed or missing else manifest


def run(args: argparse.Namespace) -> int:
    """Build, then run until the window closes; 2 if the project cannot start."""
    manifest = prepare(args.dir, "run")
    if manifest is None:
        return 2
    from wvwasi.packager.caches import compiled_dir
    from wvwasi.runtime.app import run_app

    return run_app(manifest, self_test=args.self_test, backend=args.webview,
                   compile_cache=compiled_dir())

"""`wvwasi check [DIR]`: validate wvwasi.toml for every target and each service's .wasm."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from wvwasi.packager.preopens import unshipped_preopens
from wvwasi.runtime.manifest import (
    PLATFORMS,
    WEB,
    Bundle,
    Manifest,
    Service,
    check_manifest,
    current_platform,
    manifest_file,
)
from wvwasi.runtime.regularfile import file_type
from wvwasi.runtime.wasminfo import WasmModuleError, check_command_module

if TYPE_CHECKING:
    import wasmtime


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `check` subcommand."""
    p = sub.add_parser(
        "check",
        help="validate wvwasi.toml and the services' .wasm files",
        description="Validate wvwasi.toml for the running OS and every [target.*] overlay, "
        "and check that each service's source is a runnable WASI preview1 command module.",
    )
    p.add_argument("dir", nargs="?", default=".", type=Path, help="project folder (default: .)")
    p.add_argument("--platform", choices=("web",),
                   help="check for that target only: web = the static site of "
                   "`wvwasi build --format web` (refuses what a browser cannot give)")
    p.set_defaults(run=run)


@cache
def _engine() -> wasmtime.Engine:
    """The host's engine settings, made once and only when a module is validated (wasmtime
    is imported then, not at start-up)."""
    from wvwasi.runtime.host.modules import make_engine

    return make_engine()


def _source_problem(source: Path) -> str | None:
    """Why `source` cannot run as a service, or None: structure and imports first (reads
    only headers), then wasmtime's validation (everything a compile checks, without compiling)."""
    try:
        check_command_module(source)
    except WasmModuleError as e:
        return e.reason
    from wvwasi.runtime.host.modules import WasmLoadError, validate_file

    try:
        validate_file(source, _engine())
    except WasmModuleError as e:
        return e.reason
    except WasmLoadError as e:
        return str(e).removeprefix(f"{source}: ")
    return None


def _service_problems(
    services: Mapping[str, Service], root: Path, shown: Path, bundle: Bundle | None,
    checked: dict[Path, str | None],
) -> list[str]:
    problems = []
    for name, service in services.items():
        key = f"{shown}: services.{name}.source"
        rel = os.path.relpath(service.source, root)
        if service.source not in checked:
            checked[service.source] = _source_problem(service.source)
        problem = checked[service.source]
        if problem == "file not found":
            hint = (
                "; run its build.command first (`wvwasi build`)"
                if service.build
                else " and the service has no build.command to create it"
            )
            problems.append(f"{key}: {rel} does not exist{hint}")
        elif problem is not None:
            problems.append(f"{key}: {rel}: {problem}")
    for i, resource in enumerate(bundle.resources if bundle else ()):
        if file_type(resource) is None:
            rel = os.path.relpath(resource, root)
            problems.append(f"{shown}: bundle.resources[{i}]: {rel} does not exist")
    return problems


def check_project(path: Path, only: str | None = None) -> tuple[list[Manifest], list[str]]:
    """Check the manifest for each platform (running OS first), or only for `only`, and every
    service's module; returns (the valid manifests, every problem found)."""
    manifests: list[Manifest] = []
    problems: list[str] = []
    current = current_platform()
    checked: dict[Path, str | None] = {}
    shown = manifest_file(path)
    platforms = (only,) if only else (current, *(p for p in PLATFORMS if p != current))
    for platform in platforms:
        result = check_manifest(path, platform=platform)
        problems += [str(e) for e in result.errors]
        if result.manifest is not None:
            manifests.append(result.manifest)
        root = result.manifest.root if result.manifest else shown.absolute().parent
        bundle = result.manifest.bundle if result.manifest else None
        problems += _service_problems(result.services, root, shown, bundle, checked)
        if platform == WEB and result.manifest is not None:
            from wvwasi.packager.web import web_problems  # aiohttp: only for --platform web

            problems += web_problems(result.manifest, shown)
        elif result.manifest is not None:  # what `wvwasi build` refuses for a built app
            problems += [f"{shown}: {p}" for p in unshipped_preopens(result.manifest)]
    return manifests, list(dict.fromkeys(problems))


def run(args: argparse.Namespace) -> int:
    """Print one `error:` line per problem (exit 2) or a short summary (exit 0)."""
    manifests, problems = check_project(args.dir, args.platform)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem{'s' * (len(problems) > 1)} found", file=sys.stderr)
        return 2
    m = manifests[0]
    services = ", ".join(m.services) or "none"
    targets = ", ".join(x.platform for x in manifests)
    print(f"ok: {m.app.name} {m.app.version} ({m.app.identifier}): services {services}; "
          f"checked for {targets}")
    return 0

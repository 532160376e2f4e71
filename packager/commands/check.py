"""`wvwasi check [DIR]`: validate wvwasi.toml for every target and each service's .wasm."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import wasmtime

from wvwasi.runtime.manifest import (
    PLATFORMS,
    Bundle,
    Manifest,
    Service,
    check_manifest,
    current_platform,
    manifest_file,
)
from wvwasi.runtime.modules import WasmLoadError, make_engine, validate_file
from wvwasi.runtime.regularfile import file_type
from wvwasi.runtime.wasminfo import WasmModuleError, check_command_module


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `check` subcommand."""
    p = sub.add_parser(
        "check",
        help="validate wvwasi.toml and the services' .wasm files",
        description="Validate wvwasi.toml for the running OS and every [target.*] overlay, "
        "and check that each service's source is a runnable WASI preview1 command module.",
    )
    p.add_argument("dir", nargs="?", default=".", type=Path, help="project folder (default: .)")
    p.set_defaults(run=run)


def _source_problem(source: Path, engine: wasmtime.Engine) -> str | None:
    """Why `source` cannot run as a service, or None: structure and imports first (reads
    only headers), then wasmtime's validation (everything a compile checks, without compiling)."""
    try:
        check_command_module(source)
        validate_file(source, engine)
    except WasmModuleError as e:
        return e.reason
    except WasmLoadError as e:
        return str(e).removeprefix(f"{source}: ")
    return None


def _service_problems(
    services: Mapping[str, Service], root: Path, shown: Path, bundle: Bundle | None,
    checked: dict[Path, str | None], engine: wasmtime.Engine,
) -> list[str]:
    problems = []
    for name, service in services.items():
        key = f"{shown}: services.{name}.source"
        rel = os.path.relpath(service.source, root)
        if service.source not in checked:
            checked[service.source] = _source_problem(service.source, engine)
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


def check_project(path: Path) -> tuple[list[Manifest], list[str]]:
    """Check the manifest for each platform (running OS first) and every service's module;
    returns (the valid manifests, every problem found)."""
    manifests: list[Manifest] = []
    problems: list[str] = []
    current = current_platform()
    checked: dict[Path, str | None] = {}
    engine = make_engine()
    shown = manifest_file(path)
    for platform in (current, *(p for p in PLATFORMS if p != current)):
        result = check_manifest(path, platform=platform)
        problems += [str(e) for e in result.errors]
        if result.manifest is not None:
            manifests.append(result.manifest)
        root = result.manifest.root if result.manifest else shown.absolute().parent
        bundle = result.manifest.bundle if result.manifest else None
        problems += _service_problems(result.services, root, shown, bundle, checked, engine)
    return manifests, list(dict.fromkeys(problems))


def run(args: argparse.Namespace) -> int:
    """Print one `error:` line per problem (exit 2) or a short summary (exit 0)."""
    manifests, problems = check_project(args.dir)
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

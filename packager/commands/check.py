"""`wvwasi check [DIR]`: validate wvwasi.toml for every target and each service's .wasm."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from wvwasi.runtime.manifest import (
    PLATFORMS,
    WEB,
    Manifest,
    ManifestError,
    current_platform,
    load_manifest,
    manifest_file,
)
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
    p.add_argument("--platform", choices=("web",),
                   help="check for that target only: web = the static site of "
                   "`wvwasi build --format web` (refuses what a browser cannot give)")
    p.set_defaults(run=run)


def _service_problems(manifest: Manifest, shown: Path) -> list[str]:
    problems = []
    for name, service in manifest.services.items():
        key = f"{shown}: services.{name}.source"
        rel = os.path.relpath(service.source, manifest.root)
        if not service.source.exists():
            hint = (
                "; run its build.command first (`wvwasi build`)"
                if service.build
                else " and the service has no build.command to create it"
            )
            problems.append(f"{key}: {rel} does not exist{hint}")
            continue
        try:
            check_command_module(service.source)
        except WasmModuleError as e:
            problems.append(f"{key}: {rel}: {e.reason}")
    for i, resource in enumerate(manifest.bundle.resources):
        if not resource.exists():
            rel = os.path.relpath(resource, manifest.root)
            problems.append(f"{shown}: bundle.resources[{i}]: {rel} does not exist")
    return problems


def check_project(path: Path, only: str | None = None) -> tuple[list[Manifest], list[str]]:
    """Load the manifest for each platform (running OS first), or only for `only`; returns
    (manifests, problems)."""
    manifests: list[Manifest] = []
    problems: list[str] = []
    current = current_platform()
    platforms = (only,) if only else (current, *(p for p in PLATFORMS if p != current))
    for platform in platforms:
        try:
            manifest = load_manifest(path, platform=platform)
        except ManifestError as e:
            problems.append(str(e))
            continue
        manifests.append(manifest)
        problems += _service_problems(manifest, manifest_file(path))
        if platform == WEB:
            from wvwasi.packager.web import web_problems  # aiohttp: only for --platform web

            problems += web_problems(manifest, manifest_file(path))
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

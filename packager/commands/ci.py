"""`wvwasi ci github [DIR]`: write .github/workflows/release.yml, a GitHub Actions workflow that
builds the services once on Linux, packages the app on Linux, Windows and macOS runners, and
attaches the packages to the release of a `v*` tag."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from wvwasi import __version__
from wvwasi.packager.formats import DEFAULT_FORMATS
from wvwasi.runtime.manifest import Manifest, ManifestError, load_manifest
from wvwasi.templates import ROOT as TEMPLATES

WORKFLOW = Path(".github") / "workflows" / "release.yml"
#: Formats a runner of that OS cannot make (wixl, for msi, is a Linux tool).
_NOT_ON_RUNNER = {"windows": ("msi",)}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `ci` subcommand."""
    p = sub.add_parser("ci", help="write a CI workflow that builds and releases the app",
                       description=__doc__.split(":", 1)[1].strip())
    p.add_argument("provider", choices=("github",))
    p.add_argument("dir", nargs="?", default=".", type=Path, help="project folder (default: .)")
    p.set_defaults(run=run)


def runner_formats(project: Path, platform: str) -> list[str]:
    """The formats the workflow builds on `platform`'s runner."""
    bundle = load_manifest(project, platform=platform).bundle.formats
    chosen = bundle or DEFAULT_FORMATS[platform]
    return [f for f in chosen if f not in _NOT_ON_RUNNER.get(platform, ())]


def render(manifest: Manifest) -> str:
    """The workflow text for the project of `manifest` (loaded for Linux)."""
    steps, paths = [], []
    for name, service in manifest.services.items():
        source = Path(os.path.relpath(service.source, manifest.root)).as_posix()
        paths.append(f"            {source}")
        if service.build is None:
            continue
        workdir = Path(os.path.relpath(service.build.workdir, manifest.root)).as_posix()
        steps += [f"      - name: Build service {name}",
                  f"        working-directory: {workdir}",
                  "        run: |",
                  *(f"          {line}" for line in service.build.command.splitlines())]
    values = {
        "wvwasi_version": __version__,
        "service_steps": "\n".join(steps),
        "service_paths": "\n".join(paths) or "            build/",
        **{f"{p}_formats": " ".join(runner_formats(manifest.root, p))
           for p in ("linux", "windows", "macos")},
    }
    text = (TEMPLATES / "release.yml").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def write_workflow(manifest: Manifest, project: Path) -> Path:
    """Write the workflow into `project`; returns its path."""
    out = project / WORKFLOW
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(manifest), encoding="utf-8")
    return out


def run(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.dir, platform="linux")
        out = write_workflow(manifest, args.dir)
    except (ManifestError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0

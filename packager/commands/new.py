"""`wvwasi new NAME [--template T] [--identifier ID] [--dir PARENT] [--no-build]`: start a
project that `wvwasi check`, `wvwasi dev` and `wvwasi build` take right away: UI, a service and
its build.command (run once here, so the .wasm exists; when its toolchain is missing this says
which packages to install), README, .gitignore and the release workflow of `wvwasi ci github`.
Templates: c (a C service), rust (a Rust service), cli (a third-party WASI program: the
Boolector SMT solver from PyPI, with files, $RESOURCES preopens and streamed stdout; with
--wasm PATH, any command module instead, in a page that runs it: arguments from a form, stdin,
files in, output files and output shown)."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from wvwasi.packager.services import build_shown
from wvwasi.packager.workflow import write_workflow
from wvwasi.runtime.manifest import load_manifest
from wvwasi.templates import ROOT as TEMPLATES

PROJECT_TEMPLATES = TEMPLATES / "new"
#: Template files stored under another name (so they do not act on the templates folder).
RENAMED = {"gitignore": ".gitignore"}
#: Each template's own settings (`description`, `packages`: what its build.command needs).
TEMPLATE_INFO = "template.toml"
DEFAULT_TEMPLATE = "c"
#: The project `--template cli --wasm PATH` makes around any command module.
WRAP_TEMPLATE = TEMPLATES / "wrap"


def templates() -> list[str]:
    return sorted(p.name for p in PROJECT_TEMPLATES.iterdir() if p.is_dir())


def template_info(template: str) -> dict[str, str]:
    """The template's template.toml."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    return tomllib.loads((PROJECT_TEMPLATES / template / TEMPLATE_INFO).read_text("utf-8"))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `new` subcommand."""
    p = sub.add_parser("new", help="create a new wvwasi project",
                       description=__doc__.split(":", 1)[1].strip())
    p.add_argument("name", help='the app name, e.g. "Photo Tools" (the folder is its slug)')
    p.add_argument("--template", choices=templates(), default=None,
                   help=f"the project's service (default: {DEFAULT_TEMPLATE}): " + "; ".join(
                       f"{t}: {template_info(t)['description']}" for t in templates()))
    p.add_argument("--wasm", type=Path, help="with --template cli (implied): wrap this WASI "
                   "command module (copied into the project) instead of the example program")
    p.add_argument("--identifier", help="reverse-DNS id (default: com.example.<slug>)")
    p.add_argument("--dir", type=Path, default=Path("."), help="parent folder (default: .)")
    p.add_argument("--no-build", dest="build", action="store_false",
                   help="do not run the services' build.command now")
    p.set_defaults(run=run)


def create_project(name: str, parent: Path, *, template: str = DEFAULT_TEMPLATE,
                   identifier: str | None = None, wasm: Path | None = None) -> Path:
    """Render template `template` into `parent/<slug>` (with `wasm`, the cli template's
    wrapper around that module); ValueError for bad input."""
    if not name.strip() or any(c in name for c in '"\\\n'):
        raise ValueError(f"app name {name!r}: expected a non-empty name without quotes, "
                         "backslashes or newlines")
    from wvwasi.packager.stage import slugify

    slug = slugify(name)
    ident = identifier or f"com.example.{slug.replace('-', '')}"
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9-]*)+", ident):
        raise ValueError(f'identifier {ident!r}: expected a reverse-DNS name like '
                         '"com.example.app"')
    source = PROJECT_TEMPLATES / template
    if not source.is_dir():
        raise ValueError(f"unknown template {template!r} (known: {', '.join(templates())})")
    values = {"name": name, "identifier": ident, "slug": slug}
    if wasm is not None:
        if template != "cli":
            raise ValueError(f"--wasm wraps a command module: use it with --template cli, "
                             f"not {template}")
        source = WRAP_TEMPLATE
        values.update(_wrapped(wasm))
    dest = parent / slug
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest} already exists and is not empty")
    staging = parent / f".{slug}.new"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            if rel.name == TEMPLATE_INFO:
                continue
            target = staging / rel.parent / RENAMED.get(rel.name, rel.name)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            text = path.read_text(encoding="utf-8")
            for key, value in values.items():
                text = text.replace("{{" + key + "}}", value)
            target.write_text(text, encoding="utf-8")
        if wasm is not None:
            (staging / "services").mkdir()
            shutil.copyfile(wasm, staging / "services" / values["wasm"])
        write_workflow(load_manifest(staging, platform="linux"), staging)
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _wrapped(wasm: Path) -> dict[str, str]:
    """Template values for wrapping `wasm`: its service name (from the file name) and file
    name; ValueError unless it is a WASI command module wasmtime can run."""
    from wvwasi.runtime.host.modules import WasmLoadError, validate_file
    from wvwasi.runtime.wasminfo import WasmModuleError, check_command_module

    try:
        check_command_module(wasm)
        validate_file(wasm)
    except (WasmModuleError, WasmLoadError) as e:
        raise ValueError(f"--wasm {e}") from None
    service = re.sub(r"[^a-z0-9_-]+", "-", wasm.stem.lower()).strip("-_")
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", service):
        service = f"tool-{service}".rstrip("-")
    return {"service": service, "wasm": f"{service}.wasm"}


def build_services(project: Path, template: str) -> bool:
    """Run each service's build.command once; False (after naming the packages the template's
    toolchain needs) if one failed."""
    services = load_manifest(project).services.values()
    failed = [s.name for s in services if s.build is not None and not build_shown(s)]
    if failed:
        print(f"warning: services {', '.join(failed)} not built. Their build.command needs "
              f"(Debian/Ubuntu): apt-get install {template_info(template)['packages']}; "
              "`wvwasi dev` and `wvwasi build` run it again.", file=sys.stderr)
    return not failed


def run(args: argparse.Namespace) -> int:
    template = args.template or ("cli" if args.wasm else DEFAULT_TEMPLATE)
    try:
        dest = create_project(args.name, args.dir, template=template,
                              identifier=args.identifier, wasm=args.wasm)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"created {dest}", flush=True)
    if args.build:
        build_services(dest, template)
    print(f"  cd {dest}\n  wvwasi dev            # run it\n"
          "  wvwasi build          # package it")
    return 0

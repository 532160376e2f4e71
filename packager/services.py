"""Service builds: whether a service's .wasm is stale, and running its `build.command` (through
tools.run_shell, the one runner: `wvwasi build` keeps the output for its error message, `run`,
`dev` and `new` also show it on stderr as it comes)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from wvwasi.packager.tools import BuildError, run_shell
from wvwasi.runtime.manifest import Manifest, ManifestError, Service, load_manifest


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


def build_service(service: Service, echo: Callable[[bytes], None] | None = None) -> None:
    """Run the service's build.command (output to `echo` as it comes); BuildError if it fails
    or does not create the service's source."""
    assert service.build is not None
    step = f"build services.{service.name}"
    run_shell(service.build.command, step=step, cwd=service.build.workdir, echo=echo)
    if not service.source.is_file():
        rel = os.path.relpath(service.source, Path.cwd())
        raise BuildError(step, f"build.command did not create {rel}")


def build_shown(service: Service) -> bool:
    """build_service() with its command on stdout and its output on stderr as it comes (a
    compiler's diagnostics, mostly); whether it succeeded."""
    assert service.build is not None
    print(f"wvwasi: building services.{service.name}: {service.build.command}", flush=True)
    try:
        build_service(service, _to_stderr)
    except BuildError as e:
        print(f"wvwasi: {e}", file=sys.stderr)
        return False
    return True


def _to_stderr(chunk: bytes) -> None:
    out = getattr(sys.stderr, "buffer", None)  # None: stderr replaced by a text stream
    if out is None:
        sys.stderr.write(chunk.decode("utf-8", "replace"))
    else:
        out.write(chunk)
    sys.stderr.flush()


def prepare(dir: Path, command: str) -> Manifest | None:
    """The manifest with every stale service rebuilt; None (after saying why) on failure."""
    try:
        manifest = load_manifest(dir)
    except ManifestError as e:
        print(f"wvwasi {command}: {e}", file=sys.stderr)
        return None
    failed = [s.name for s in manifest.services.values() if is_stale(s) and not build_shown(s)]
    missing = [s.name for s in manifest.services.values()
               if s.name not in failed and not s.source.is_file()]
    for name in missing:
        rel = os.path.relpath(manifest.services[name].source, manifest.root)
        print(f"wvwasi {command}: services.{name}.source: {rel} does not exist and there is no "
              "build.command to create it", file=sys.stderr)
    return None if failed or missing else manifest

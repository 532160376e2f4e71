"""The `wvwasi build` pipeline.

check manifest -> formats and tools -> each service's build.command, then its import check and
wasmtime validation -> precompile (portable artefacts) -> freeze (cached runtime) -> stage the
app -> each format -> SHA256SUMS and build-report.json -> move into the output folder.

Everything is built in a temporary folder inside the output folder and moved into place at the
end, so a failed build leaves the output folder as it was; the error names the failed step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wvwasi import __version__
from wvwasi.packager import caches, freeze, wincross
from wvwasi.packager.formats import (
    DEFAULT_FORMATS,
    FORMATS,
    Arch,
    FormatOptions,
    Platform,
    builder,
    format_tools,
    formats_for,
    host_arch,
)
from wvwasi.packager.formats._sign import (
    check_macos_signing,
    sign_windows,
    signing_tool,
    windows_certificate,
)
from wvwasi.packager.formats._webview2 import installer_for
from wvwasi.packager.preopens import unshipped_preopens
from wvwasi.packager.services import build_service, is_stale
from wvwasi.packager.stage import StagedApp, stage_app
from wvwasi.packager.tools import BuildError, find_tool
from wvwasi.packager.update_release import sign_release, signing_key
from wvwasi.packager.web import web_problems, write_site
from wvwasi.runtime.host.modules import WasmLoadError, sha256_file, validate_file
from wvwasi.runtime.manifest import Manifest, ManifestError, current_platform, load_manifest
from wvwasi.runtime.wasminfo import WasmModuleError, check_command_module

REPORT_NAME = "build-report.json"
SUMS_NAME = "SHA256SUMS"


@dataclass(frozen=True)
class BuildRequest:
    """What to build."""

    project: Path
    formats: tuple[str, ...] = ()  # empty: [bundle] formats, else the OS default
    out: Path | None = None  # default: <project>/dist
    platform: Platform | None = None  # default: this OS
    #: a runtime frozen elsewhere (`onedir/`, optional `onefile/`, laid out like the cache);
    #: how Windows/macOS apps are packaged from another OS
    runtime: Path | None = None
    source_date_epoch: int | None = None
    build_services: bool = True  # False: use the .wasm as they are (built by an earlier CI job)
    #: Windows from Linux without `runtime`: python.org's embeddable CPython for Windows (zip or
    #: folder) to freeze with under Wine; default $WVWASI_WINDOWS_PYTHON (wincross.py)
    windows_python: Path | None = None


@dataclass(frozen=True)
class Artefact:
    format: str
    path: Path
    size: int  # bytes (a folder: the sum of its files)
    sha256: str | None  # None for folders
    seconds: float


@dataclass
class BuildReport:
    """What a build produced and how long each step took."""

    app: str
    identifier: str
    version: str
    platform: str
    arch: str
    webview: str
    out: Path
    runtime: str = ""  # the frozen runtime used (cache entry name or --runtime path)
    steps: list[tuple[str, float]] = field(default_factory=list)
    artefacts: list[Artefact] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "wvwasi": __version__,
            "app": self.app,
            "identifier": self.identifier,
            "version": self.version,
            "platform": self.platform,
            "arch": self.arch,
            "webview": self.webview,
            "runtime": self.runtime,
            "out": str(self.out),
            "seconds": round(self.seconds, 3),
            "steps": [{"step": s, "seconds": round(t, 3)} for s, t in self.steps],
            "artefacts": [
                {"format": a.format, "path": str(a.path), "size": a.size, "sha256": a.sha256,
                 "seconds": round(a.seconds, 3)}
                for a in self.artefacts
            ],
        }


class Progress:
    """Receives the pipeline's progress; the default ignores it (the CLI shows it with rich)."""

    def step(self, name: str) -> None:
        """A step starts."""

    def done(self, name: str, seconds: float) -> None:
        """A step ended (formats may run at the same time and end in any order)."""

    def log(self, message: str) -> None:
        """A remark worth showing (a skipped step, a one-time freeze)."""


def select_formats(manifest: Manifest, requested: tuple[str, ...]) -> tuple[str, ...]:
    """The formats to build, in build order, with what they need (dmg needs app)."""
    chosen = requested or manifest.bundle.formats or DEFAULT_FORMATS[manifest.platform]
    possible = formats_for(manifest.platform)
    for name in chosen:
        if name not in FORMATS:
            raise BuildError("formats", f"unknown format {name!r} (known: {', '.join(FORMATS)})")
        if name not in possible:
            info = FORMATS[name]
            if "web" in (info.platform, manifest.platform):
                raise BuildError("formats", f"{name!r} cannot be built with the web site: "
                                 "build the site on its own (wvwasi build --format web)")
            raise BuildError("formats", f"{name!r} is a {info.platform} format, not for "
                             f"{manifest.platform} (use --platform {info.platform} with a "
                             f"--runtime frozen on {info.platform}, or build there)")
    wanted = set(chosen)
    for name in chosen:
        wanted.update(FORMATS[name].after)
    return tuple(n for n in FORMATS if n in wanted)


def build(request: BuildRequest, progress: Progress | None = None) -> BuildReport:
    """Run the pipeline; BuildError (with the step) on failure, leaving no output behind."""
    progress = progress or Progress()
    started = time.perf_counter()
    clock = _StepClock(progress)
    web_only = bool(request.formats) and set(request.formats) == {"web"}
    system = request.platform or ("web" if web_only else current_platform())
    web = system == "web"  # a static site: no runtime to freeze (packager/web.py)
    cross = not web and system != current_platform()
    windows_python = None  # set only for a cross-freeze
    if cross and request.runtime is None:
        if (system, current_platform()) != ("windows", "linux"):
            raise BuildError("platform", f"building for {system} on {current_platform()} needs "
                             "--runtime: a runtime frozen on that OS (PyInstaller cannot "
                             "cross-build)")
        windows_python = wincross.python_source(request.windows_python)
        wincross.require_tools()
    request = dataclasses.replace(request, windows_python=windows_python)

    with clock("manifest"):
        try:
            manifest = load_manifest(request.project, platform=system)
        except ManifestError as e:
            raise BuildError("manifest", str(e)) from None
        problem = None if web else next(unshipped_preopens(manifest), None)
        if problem is not None:
            raise BuildError("manifest", f"{manifest.path}: {problem}")
    arch = host_arch()
    with clock("formats"):
        names = select_formats(manifest, request.formats)
        for name in names:
            for tool in format_tools(name):
                find_tool(tool, f"format {name}")
        if system == "windows" and manifest.bundle.windows.sign:
            find_tool(signing_tool(), "sign")
            windows_certificate("sign")
        if system == "macos":
            check_macos_signing(manifest.bundle.macos, "sign")
        if {"nsis", "msi"} & set(names):
            installer_for(manifest.bundle.windows.webview2, arch.windows, "webview2")
        update_key = None if web else signing_key(manifest, "sign updates")
    out = (request.out or manifest.root / "dist").absolute()
    report = BuildReport(manifest.app.name, manifest.app.identifier, manifest.app.version,
                         system, arch.name, manifest.webview, out)

    with caches.lock(_lock_path(out)), _output_folder(out) as temp:
        work, staged_out = temp / "work", temp / "out"
        work.mkdir()
        staged_out.mkdir()
        for name, service in manifest.services.items():
            if service.build is not None and request.build_services:
                if service.build.watch and not is_stale(service, manifest.path):
                    progress.log(f"services.{name} is up to date (no watched file and not "
                                 "wvwasi.toml is newer)")
                else:
                    with clock(f"build services.{name}"):
                        build_service(service)
            _check_service(manifest, name)
        if web:
            with clock("stage"):
                app = _stage_site(manifest, work / "stage", arch)
        else:
            app, report.runtime = _stage_native(request, manifest, names, work, arch, cross,
                                                clock, progress)
        built: dict[str, tuple[Path, ...]] = {}

        def one_format(name: str) -> list[Artefact]:
            with clock(f"format {name}") as timer:
                fmt_work = work / "formats" / name.replace(".", "-")
                fmt_work.mkdir(parents=True)
                options = FormatOptions(work=fmt_work, source_date_epoch=request.source_date_epoch,
                                        built=dict(built), log=progress.log)
                paths = tuple(builder(name)(app, staged_out, options))
            built[name] = paths
            return [Artefact(name, out / p.name, _size(p), _sha256(p), timer.seconds)
                    for p in paths]

        # formats that need another's output (dmg needs app) wait for it; the rest run at once
        for wave in _waves(names):
            with ThreadPoolExecutor(max_workers=_jobs()) as pool:
                for artefacts in pool.map(one_format, wave):
                    report.artefacts += artefacts
        # the report lists format steps in build order, whichever ended first
        order = {f"format {n}": i for i, n in enumerate(names)}
        clock.steps.sort(key=lambda s: (s[0] in order, order.get(s[0], 0)))
        if update_key is not None:  # ARTEFACT.sig + latest.json (docs/update.md)
            with clock("sign updates"):
                sign_release(manifest, arch.name,
                             [(a.format, staged_out / a.path.name) for a in report.artefacts],
                             update_key, staged_out, request.source_date_epoch)
        with clock("checksums"):
            sums = sorted((a.path.name, a.sha256) for a in report.artefacts if a.sha256)
            (staged_out / SUMS_NAME).write_text(
                "".join(f"{h}  {n}\n" for n, h in sums), encoding="utf-8")
        report.steps = list(clock.steps)
        report.seconds = time.perf_counter() - started
        (staged_out / REPORT_NAME).write_text(json.dumps(report.to_json(), indent=2) + "\n",
                                              encoding="utf-8")
        for entry in sorted(staged_out.iterdir()):
            _replace(entry, out / entry.name)
    return report


def _stage_native(request: BuildRequest, manifest: Manifest, names: tuple[str, ...], work: Path,
                  arch: Arch, cross: bool, clock: _StepClock,
                  progress: Progress) -> tuple[StagedApp, str]:
    """Precompile the services, freeze (or reuse) the runtime and stage the app folder;
    returns the staged app and the runtime's key."""
    system = manifest.platform
    precompiled: dict[str, Path] = {}
    with clock("precompile"):
        if cross:
            progress.log(f"not precompiling services for {system} here: the app compiles "
                         "them on first start and caches them")
        else:
            by_source: dict[Path, Path] = {}  # services of one module: compiled once
            for name, service in manifest.services.items():
                try:
                    if service.source not in by_source:
                        by_source[service.source] = caches.cached_precompile(
                            service.source, work / "cwasm" / name)
                    precompiled[name] = by_source[service.source]
                except WasmLoadError as e:
                    raise BuildError(f"precompile services.{name}", str(e)) from None
    with clock("freeze"):
        # Linux's onefile is a launcher + the app folder (formats/onefile.py): no
        # single-file runtime; Windows and macOS append the payload to PyInstaller's
        single = system != "linux" and any(FORMATS[n].needs_onefile for n in names)
        runtime = _runtime(request, manifest, single, progress)
    with clock("stage"):
        app = stage_app(
            manifest, runtime.onedir, runtime.executable, work / "stage", arch=arch,
            precompiled=precompiled, pack=caches.pack_wasm, onefile_runtime=runtime.onefile,
            source_date_epoch=request.source_date_epoch,
        )
        _sign_executables(app)
    return app, runtime.key


def _stage_site(manifest: Manifest, work: Path, arch: Arch) -> StagedApp:
    """The static site in place of an app folder (formats/web.py copies it)."""
    problems = web_problems(manifest, manifest.path)
    if problems:
        more = f" (and {len(problems) - 1} more: wvwasi check --platform web)" * (len(problems) > 1)
        raise BuildError("web", problems[0] + more)
    site = write_site(manifest, work / "site")
    return StagedApp(manifest, "web", arch, site, site / manifest.ui.entry)


def _waves(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """`names` in groups that can be built at the same time, each after the ones before."""
    done: set[str] = set()
    waves = []
    while len(done) < len(names):
        wave = tuple(n for n in names if n not in done
                     and all(d in done or d not in names for d in FORMATS[n].after))
        waves.append(wave)
        done.update(wave)
    return waves


def _jobs() -> int:
    """How many formats are built at once: WVWASI_BUILD_JOBS, else the number of CPUs (>= 2:
    formats spend much of their time waiting on I/O and outside tools)."""
    value = os.environ.get("WVWASI_BUILD_JOBS", "")
    return int(value) if value.isdigit() and int(value) > 0 else max(2, os.cpu_count() or 1)


def _lock_path(out: Path) -> Path:
    """The lock two builds into the same output folder share (the second one waits)."""
    digest = hashlib.sha256(str(out).encode()).hexdigest()[:16]
    for folder in (caches.cache_dir() / "locks", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder / f"wvwasi-build-{digest}"
        except OSError:
            continue
    raise BuildError("output", f"no writable folder for the build lock of {out}")


def _check_service(manifest: Manifest, name: str) -> None:
    source = manifest.services[name].source
    step = f"check services.{name}"
    if not source.is_file():
        how = "its build.command did not create it" if manifest.services[name].build else \
            "and it has no build.command to make it"
        raise BuildError(step, f"{source} does not exist ({how})")
    try:
        check_command_module(source)
        validate_file(source)  # seconds, where a doomed compile can take minutes
    except WasmModuleError as e:
        raise BuildError(step, f"{source}: {e.reason}") from None
    except WasmLoadError as e:
        raise BuildError(step, str(e)) from None


def _runtime(
    request: BuildRequest, manifest: Manifest, onefile: bool, progress: Progress
) -> freeze.Runtime:
    """The runtime to stage: the given prebuilt one, or the cached (frozen if need be) one;
    with `request.windows_python`, the Windows one frozen under Wine."""
    if request.runtime is None:
        backend = freeze.runtime_backend(manifest.webview, manifest.platform)
        source = request.windows_python
        cross = wincross.prepare(source, progress.log) if source else None
        return freeze.ensure_runtime(backend, onefile=onefile, log=progress.log, cross=cross)
    exe = freeze.executable_name(manifest.platform)
    onedir = request.runtime / "onedir"
    if not (onedir / exe).is_file():
        raise BuildError("freeze", f"--runtime {request.runtime}: expected onedir/{exe} in it")
    single = request.runtime / "onefile" / exe
    if onefile and not single.is_file():
        raise BuildError("freeze", f"--runtime {request.runtime}: format onefile needs "
                         f"onefile/{exe} in it")
    return freeze.Runtime(onedir, exe, single if onefile else None, str(request.runtime))


def _sign_executables(app: StagedApp) -> None:
    """Authenticode-sign the Windows executables before they are packaged (if asked to)."""
    sign_windows(app, app.executable, "sign")
    if app.onefile is not None:
        sign_windows(app, app.onefile, "sign")


class _StepClock:
    """Times steps, tells `progress` when each starts, and adds the step to errors from code
    that is not a BuildError (an OSError while copying, say)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.steps: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[_Timer]:
        self.progress.step(name)
        timer = _Timer()
        start = time.perf_counter()
        try:
            yield timer
        except OSError as e:
            where = f" ({e.filename})" if e.filename else ""
            raise BuildError(name, f"{e.strerror or e}{where}") from None
        timer.seconds = time.perf_counter() - start
        self.steps.append((name, timer.seconds))
        self.progress.done(name, timer.seconds)


@dataclass
class _Timer:
    seconds: float = 0.0


@contextlib.contextmanager
def _output_folder(out: Path) -> Iterator[Path]:
    """A temporary folder inside `out` (created if need be), removed afterwards; on failure `out`
    is left as it was (removed again if this build created it)."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=".wvwasi-build-", dir=out))
    except OSError as e:
        raise BuildError("output", f"cannot write to {out}: {e.strerror or e}") from None
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    shutil.rmtree(temp, ignore_errors=True)


def _replace(src: Path, dest: Path) -> None:
    """Move `src` to `dest`, replacing a file or folder already there."""
    if dest.is_dir() and not dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())
    return path.stat().st_size


def _sha256(path: Path) -> str | None:
    """A file artefact's SHA-256 (None for a folder)."""
    return None if path.is_dir() else sha256_file(path)

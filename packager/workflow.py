"""The release workflow (`wvwasi ci github`, `wvwasi new`): .github/workflows/release.yml, a
GitHub Actions workflow that builds the services once on Linux, packages and self-tests the app
on Linux, Windows and macOS runners (the MSI on Linux from the Windows runtime), and attaches
the packages with one SHA256SUMS to the release of a `v*` tag once every job has passed."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import wvwasi
from wvwasi import __version__
from wvwasi.packager.formats import DEFAULT_FORMATS
from wvwasi.runtime.manifest import Manifest, load_manifest
from wvwasi.templates import ROOT as TEMPLATES

WORKFLOW = Path(".github") / "workflows" / "release.yml"
#: Where the workflow's wvwasi wheel is vendored (without `[bundle] wvwasi`).
WHEEL_DIR = Path(".github") / "wvwasi"
#: Formats a runner of that OS does not make itself (msi: wixl is a Linux tool; its own job).
_NOT_ON_RUNNER = {"windows": ("msi",)}
#: The format each runner self-tests (its app folder or bundle), added if not asked for.
_SELF_TESTED = {"linux": "dir", "windows": "dir", "macos": "app"}
#: Repository secrets, by what the manifest asks for.
_WINDOWS_SECRETS = ("WVWASI_WINDOWS_CERT_BASE64", "WVWASI_WINDOWS_CERT_PASSWORD")
_MACOS_SECRETS = ("WVWASI_MACOS_CERT_BASE64", "WVWASI_MACOS_CERT_PASSWORD")
_APPLE_SECRETS = ("WVWASI_APPLE_ID", "WVWASI_APPLE_PASSWORD", "WVWASI_APPLE_TEAM_ID")


def runner_formats(project: Path, platform: str) -> list[str]:
    """The formats the workflow builds on `platform`'s runner (with the self-tested one)."""
    bundle = load_manifest(project, platform=platform).bundle.formats
    chosen = list(bundle or DEFAULT_FORMATS[platform])
    if _SELF_TESTED[platform] not in chosen:
        chosen.insert(0, _SELF_TESTED[platform])
    return [f for f in chosen if f not in _NOT_ON_RUNNER.get(platform, ())]


def wants_msi(project: Path) -> bool:
    bundle = load_manifest(project, platform="windows").bundle.formats
    return "msi" in (bundle or DEFAULT_FORMATS["windows"])


def required_secrets(project: Path) -> list[str]:
    """The repository secrets the manifest's signing settings need."""
    names: list[str] = []
    if load_manifest(project, platform="windows").bundle.windows.sign:
        names += _WINDOWS_SECRETS
    macos = load_manifest(project, platform="macos").bundle.macos
    if macos.signing_identity:
        names += _MACOS_SECRETS
    if macos.notarize:
        names += _APPLE_SECRETS
    return names


def _secrets_check(names: list[str]) -> str:
    if not names:
        return "      # (wvwasi.toml asks for no signing: no secrets needed)"
    return "\n".join([
        "      - name: Check the signing secrets wvwasi.toml asks for",
        "        env:",
        *(f"          {n}: ${{{{ secrets.{n} }}}}" for n in names),
        "        run: |",
        "          missing=()",
        f"          for name in {' '.join(names)}; do "
        '[ -n "${!name}" ] || missing+=("$name"); done',
        '          if [ "${#missing[@]}" != 0 ]; then',
        '            echo "::error::missing repository secrets: ${missing[*]} '
        '(wvwasi.toml asks to sign)"',
        "            exit 1",
        "          fi",
    ])


def _source_tree() -> Path | None:
    """The wvwasi source tree this wvwasi runs from (an editable or source install)."""
    root = Path(wvwasi.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "wvwasi"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for top in ("pyproject.toml", "wvwasi", "runtime", "packager", "templates"):
        paths = [root / top] if (root / top).is_file() else sorted((root / top).rglob("*"))
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def vendor_wheel(project: Path) -> Path | None:
    """Put a wheel of this wvwasi into `project`/.github/wvwasi/ (built with pip once per source
    version, cached); its path relative to `project`, or None when wvwasi is not installed from
    source (the workflow then installs this version from PyPI)."""
    source = _source_tree()
    if source is None:
        return None
    from wvwasi.packager.caches import cache_dir  # imports wasmtime: only when a wheel is made

    cached = cache_dir() / "wheels" / _tree_digest(source)
    name = f"wvwasi-{__version__}-py3-none-any.whl"
    if not (cached / name).is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(dir=cached.parent))
        try:
            proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                                   "--disable-pip-version-check", "-w", temp, source],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not (temp / name).is_file():
                tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
                raise OSError(f"cannot build the wvwasi wheel the workflow installs ({tail}); "
                              'name a published version instead: [bundle] wvwasi = "X.Y.Z"')
            try:
                os.replace(temp, cached)
            except OSError:
                if not (cached / name).is_file():  # not a concurrent run that got there first
                    raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    dest = project / WHEEL_DIR
    if dest.is_dir():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copyfile(cached / name, dest / name)
    return WHEEL_DIR / name


def _msi_job() -> str:
    return (TEMPLATES / "release-msi.yml").read_text(encoding="utf-8")


def render(manifest: Manifest, wheel: Path | None = None) -> str:
    """The workflow text for the project of `manifest` (loaded for Linux); `wheel`: the
    vendored wvwasi wheel (relative to the project), used unless `[bundle] wvwasi` is set."""
    root = manifest.root
    steps, paths = [], []
    for name, service in manifest.services.items():
        source = Path(os.path.relpath(service.source, root)).as_posix()
        paths.append(f"            {source}")
        if service.build is None:
            continue
        workdir = Path(os.path.relpath(service.build.workdir, root)).as_posix()
        steps += [f"      - name: Build service {name}",
                  f"        working-directory: {workdir}",
                  "        run: |",
                  *(f"          {line}" for line in service.build.command.splitlines())]
    if manifest.bundle.wvwasi:
        package, pin = "wvwasi", f"=={manifest.bundle.wvwasi}"
        note = "the published version [bundle] wvwasi names"
    elif wheel is not None:
        package, pin = f"./{wheel.as_posix()}", ""
        note = "the wheel `wvwasi ci github` vendored (run it again after upgrading wvwasi)"
    else:
        package, pin = "wvwasi", f"=={__version__}"
        note = "the version `wvwasi ci github` ran with"
    msi = wants_msi(root)
    values = {
        "wvwasi_package": package,
        "wvwasi_pin": pin,
        "wvwasi_note": note,
        "secrets_check": _secrets_check(required_secrets(root)),
        "service_steps": "\n".join(steps),
        "service_paths": "\n".join(paths),
        "msi_job": _msi_job() if msi else "",
        "release_needs": "package, msi" if msi else "package",
        **{f"{p}_formats": " ".join(runner_formats(root, p))
           for p in ("linux", "windows", "macos")},
    }
    text = (TEMPLATES / "release.yml").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def write_workflow(manifest: Manifest, project: Path) -> Path:
    """Write the workflow (and the vendored wheel it installs) into `project`; its path."""
    wheel = None if manifest.bundle.wvwasi else vendor_wheel(project)
    out = project / WORKFLOW
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(manifest, wheel), encoding="utf-8")
    return out

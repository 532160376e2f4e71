"""Staging: the app payload, and `StagedApp`, the runnable app folder every format packages.

A staged app is a copy of the frozen runtime (the same for every app) with the executable renamed
after the app and the payload beside it:

    <slug>/                   the app folder (`dir`; what deb/rpm/nsis/msi/... install)
      <slug>[.exe]            the runtime executable
      _internal/              the runtime's Python, libraries, wvwasi.runtime
      app/                    the payload, found by runtime/frozen_main.py next to the executable
        wvwasi.toml           the manifest resolved for the target OS, paths relative to app/
        payload.json          the SHA-256 of every other payload file (the runtime loads a
                              precompiled artefact only if it matches; modules.payload_digests)
        ui/                   [ui] dir
        services/<id>.wasm    each module once, named by its content (`<id>` = the first 16 hex
                              digits of its SHA-256; services of one module share it);
                              `<id>.wasm.gz` when it has a precompiled artefact: only the
                              fallback for a CPU the artefact cannot run on
        precompiled/<id>.cwasm  portable precompiled artefacts (same OS/arch only)
        icon.png              the app icon (1024 px; the default one if [app] icon is unset)
        icon.ico              (Windows) the same for shortcuts
        icons/association-<n>.png  [[bundle.file_associations]] icons, by index
        resources/...         [bundle] resources, project-relative layout kept ($RESOURCES)

On Windows and macOS the single-file executable is the onefile runtime with the payload appended
as a zip archive (entries under `app/`), which frozen_main.py extracts into the user cache once
(Linux's `onefile` is a launcher + the app folder: formats/onefile.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import struct
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from wvwasi.packager import caches, icons, winres
from wvwasi.packager.formats import Arch, Platform
from wvwasi.packager.tools import BuildError
from wvwasi.runtime.host.modules import (
    artefact_name,
    content_name,
    copy_artefact,
    header_path,
    packed_path,
    write_payload_digests,
)
from wvwasi.runtime.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    dump_manifest,
    load_manifest,
)

PAYLOAD = "app"
_ZIP_EPOCH = 315532800  # 1980-01-01, the earliest time a zip entry can carry


def slugify(name: str) -> str:
    """A file/package name from the app name: lower-case ASCII letters, digits and '-'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug if slug[:1].isalpha() else f"app-{slug}".rstrip("-")


@dataclass(frozen=True)
class StagedApp:
    """A runnable app folder for one OS/arch, plus the single-file executable if built."""

    manifest: Manifest
    platform: Platform
    arch: Arch
    root: Path
    executable: Path
    onefile: Path | None = None

    @property
    def slug(self) -> str:
        """File, package and command name."""
        return slugify(self.manifest.app.name)

    @property
    def name(self) -> str:
        """Human-readable name."""
        return self.manifest.app.name

    @property
    def version(self) -> str:
        return self.manifest.app.version

    @property
    def payload(self) -> Path:
        return self.root / PAYLOAD

    @property
    def icon(self) -> Path:
        """The app icon as a square 1024 px PNG."""
        return self.payload / "icon.png"

    def artefact_name(self, suffix: str = "") -> str:
        """`<slug>-<version>-<os>-<arch><suffix>`, the base name of most artefacts."""
        arch = self.arch.windows if self.platform == "windows" else self.arch.name
        return f"{self.slug}-{self.version}-{self.platform}-{arch}{suffix}"


def payload_manifest(manifest: Manifest, services: Mapping[str, str]) -> str:
    """The manifest as the payload's `wvwasi.toml` text (manifest.dump_manifest): target
    overlay applied, build steps dropped (the developer's commands and folders), paths
    relative to the payload (`services`: name -> payload path; see the module docstring)."""
    root = manifest.root

    def relocate(key: str, path: Path) -> str:
        if key == "app.icon":
            return "icon.png"
        if key == "ui.dir":
            return "ui"
        if key.startswith("services."):
            return services[key.split(".")[1]]
        if key.startswith("bundle.resources["):
            return f"resources/{path.relative_to(root).as_posix()}"
        if key.startswith("bundle.file_associations["):  # staged by stage_payload
            return f"icons/association-{key.split('[')[1].split(']')[0]}.png"
        raise ValueError(f"{key}: no place in the payload for {path}")

    built = {name: replace(s, build=None) for name, s in manifest.services.items()}
    staged = replace(manifest, services=MappingProxyType(built))
    if staged.app.icon is None:  # the payload always has one (the default icon)
        staged = replace(staged, app=replace(staged.app, icon=manifest.root / "icon.png"))
    return dump_manifest(staged, relocate)


def stage_payload(
    manifest: Manifest, dest: Path, precompiled: Mapping[str, Path] | None = None,
    pack: Callable[[Path, Path], None] | None = None,
) -> Path:
    """Write the payload folder `dest` (see the module docstring) and check it loads.

    `precompiled`: service name -> artefact from `modules.precompile()` (absent: the runtime
    compiles on first start and caches). `pack(wasm, dest)`: with an artefact, the `.wasm` is
    shipped as `dest` (`services/<id>.wasm.gz`) by it, only the fallback for a CPU the artefact
    cannot run on (see modules.packed_path), instead of uncompressed beside it. Each module is
    written once, under its content name, however many services use it.
    """
    dest.mkdir(parents=True)
    shutil.copytree(manifest.ui.dir, dest / "ui", symlinks=False)
    sources: dict[str, str] = {}
    for name, service in manifest.services.items():
        if not service.source.is_file():
            raise BuildError("stage", f"services.{name}.source: {service.source} does not exist "
                             "(no build.command made it?)")
        target = dest / "services" / content_name(service.source)
        target.parent.mkdir(exist_ok=True)
        first = target.name not in {Path(s).name for s in sources.values()}
        sources[name] = f"services/{target.name}"
        if not first:
            continue  # another service's module, already staged
        if precompiled and name in precompiled:
            out = dest / "precompiled" / artefact_name(target)
            link_or_copy_artefact(precompiled[name], out)
            if pack is not None:
                pack(service.source, packed_path(target))
                continue
        shutil.copyfile(service.source, target)
    icon = icons.load_icon(manifest.app.icon)
    icons.write_png(icon, dest / "icon.png", icons.MASTER_SIZE)
    if manifest.platform == "windows":  # shortcuts and Add/Remove Programs show this one
        icons.write_ico(icon, dest / "icon.ico")
    for i, association in enumerate(manifest.bundle.file_associations):
        if association.icon is not None:  # the Linux packages install it (formats/_linux.py)
            (dest / "icons").mkdir(exist_ok=True)
            shutil.copyfile(association.icon, dest / "icons" / f"association-{i}.png")
    for res in manifest.bundle.resources:
        rel = res.relative_to(manifest.root)
        target = dest / "resources" / rel
        if not res.exists():
            raise BuildError("stage", f"bundle.resources: {res} does not exist")
        target.parent.mkdir(parents=True, exist_ok=True)
        if res.is_dir():
            shutil.copytree(res, target, symlinks=False, dirs_exist_ok=True)
        else:
            shutil.copyfile(res, target)
    (dest / MANIFEST_NAME).write_text(payload_manifest(manifest, sources), encoding="utf-8")
    try:
        load_manifest(dest, platform=manifest.platform)
    except ManifestError as e:  # a bug in payload_manifest(), not the user's
        raise BuildError("stage", f"the staged manifest does not load: {e}") from None
    write_payload_digests(dest)
    return dest


def stage_app(
    manifest: Manifest,
    runtime_dir: Path,
    runtime_exe: str,
    dest: Path,
    *,
    arch: Arch,
    precompiled: Mapping[str, Path] | None = None,
    pack: Callable[[Path, Path], None] | None = None,
    onefile_runtime: Path | None = None,
    source_date_epoch: int | None = None,
) -> StagedApp:
    """Copy the runtime folder to `dest/<slug>`, rename its executable, add the payload (and on
    Windows the app's icon and version resource: winres.py); with `onefile_runtime`, also
    write `dest/onefile/<slug>[.exe]` with the payload appended."""
    slug = slugify(manifest.app.name)
    exe_suffix = ".exe" if manifest.platform == "windows" else ""
    root = dest / slug
    if not (runtime_dir / runtime_exe).is_file():
        raise BuildError("stage", f"{runtime_dir}: no runtime executable {runtime_exe!r} in it")
    shutil.copytree(runtime_dir, root, symlinks=True)
    executable = root / f"{slug}{exe_suffix}"
    os.replace(root / runtime_exe, executable)
    stage_payload(manifest, root / PAYLOAD, precompiled, pack)
    if manifest.platform == "windows":
        winres.set_app_resources(executable, root / PAYLOAD / "icon.ico", manifest.app)
    onefile = None
    if onefile_runtime is not None:
        onefile = dest / "onefile" / f"{slug}{exe_suffix}"
        onefile.parent.mkdir()
        shutil.copyfile(onefile_runtime, onefile)
        if manifest.platform == "windows":  # before the payload: its offsets are absolute
            winres.set_app_resources(onefile, root / PAYLOAD / "icon.ico", manifest.app)
        append_payload(onefile, root / PAYLOAD, source_date_epoch)
        if manifest.platform == "windows":
            winres.fix_checksum(onefile)
        onefile.chmod(0o755)
    return StagedApp(manifest, manifest.platform, arch, root, executable, onefile)


def link_or_copy_artefact(src: Path, dest: Path) -> Path:
    """An artefact and its sidecar hard-linked from the compile cache when possible (same file
    system: no 170 MB copy per build), else copied."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    pairs = ((src, dest), (header_path(src), header_path(dest)))
    try:
        for a, b in pairs:
            os.link(a, b)
        return dest
    except OSError:
        for _a, b in pairs:
            b.unlink(missing_ok=True)
        return copy_artefact(src, dest)


def walk(top: Path) -> Iterator[Path]:
    """Every file, symlink and folder under `top` (not `top`), sorted, parents first."""
    for entry in sorted(top.iterdir(), key=lambda p: p.name):
        yield entry
        if entry.is_dir() and not entry.is_symlink():
            yield from walk(entry)


def append_payload(executable: Path, payload: Path, source_date_epoch: int | None) -> None:
    """Append `payload` as a zip archive (entries `app/...`) to `executable`.

    The archive follows the executable's bytes with absolute offsets, so
    `zipfile.ZipFile(sys.executable)` reads it back. Files of 1 MiB or more are deflated once
    and the result cached by content (a 170 MB artefact is not compressed again per build).
    """
    stamp = time.gmtime(max(source_date_epoch or time.time(), _ZIP_EPOCH))
    dos_time = stamp.tm_hour << 11 | stamp.tm_min << 5 | stamp.tm_sec // 2
    dos_date = (stamp.tm_year - 1980) << 9 | stamp.tm_mon << 5 | stamp.tm_mday
    central = bytearray()
    count = 0
    with open(executable, "ab") as out:
        for path in walk(payload):
            if path.is_dir():
                continue
            name = f"{PAYLOAD}/{path.relative_to(payload).as_posix()}".encode()
            data = path.read_bytes()
            crc, packed = zlib.crc32(data), _deflated(data)
            if len(packed) > 0xFFFFFFFE or len(data) > 0xFFFFFFFE:
                raise BuildError("stage", f"{path}: too big for the single-file archive (4 GB)")
            offset = out.tell()
            fields = (0x0800, 8, dos_time, dos_date, crc, len(packed), len(data), len(name))
            out.write(struct.pack("<IH4H3I2H", 0x04034B50, 20, *fields[:4], *fields[4:7],
                                  len(name), 0) + name)
            out.write(packed)
            central += struct.pack("<I6H3I5H2I", 0x02014B50, 0x0314, 20, *fields[:2],
                                   *fields[2:4], *fields[4:7], len(name), 0, 0, 0, 0,
                                   (stat.S_IFREG | 0o644) << 16, offset) + name
            count += 1
        start = out.tell()
        out.write(central)
        out.write(struct.pack("<I4H2IH", 0x06054B50, 0, 0, count, count, len(central), start, 0))


def _deflated(data: bytes) -> bytes:
    """Raw deflate of `data`, from the package parts cache for big files."""
    if len(data) < 1 << 20:
        return _deflate(data)
    return caches.cached_blob(f"deflate-{hashlib.sha256(data).hexdigest()}",
                              lambda: _deflate(data))


def _deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()

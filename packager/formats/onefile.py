"""`onefile`: the app as one executable file.

Linux: a POSIX sh launcher (templates/onefile.sh) followed by the app folder as a gzip-compressed
tar archive, the same bytes as the `tar.gz` format's (built from the same cached parts, so a
rebuild after a UI edit compresses only the part holding the UI). The first launch extracts it
once into `~/.cache/wvwasi-code/<identifier>/onefile/<digest>/` (out of every preopen's reach,
runtime/paths.py) and makes it read-only; later launches check that folder and run
the app folder's executable from it (docs/build.md, "onefile").

Windows and macOS: PyInstaller's single-file runtime with the payload appended as a zip archive
(see stage.py), which `runtime/frozen_main.py` extracts once into the same kind of folder.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._parts import write_targz
from wvwasi.packager.stage import StagedApp
from wvwasi.packager.tools import BuildError
from wvwasi.runtime.host.modules import sha256_file
from wvwasi.runtime.paths import CODE_FOLDER, cache_name
from wvwasi.templates import ROOT as TEMPLATES

TOOLS: tuple[str, ...] = ()
LAUNCHER = TEMPLATES / "onefile.sh"


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    if app.platform == "linux":
        dest = out / app.artefact_name("-onefile")
        write_launcher(app, dest, opts.source_date_epoch)
        return [dest]
    if app.onefile is None:
        raise BuildError("onefile", "no single-file runtime was staged for this build")
    dest = out / app.artefact_name("-onefile" + app.onefile.suffix)
    shutil.copyfile(app.onefile, dest)
    dest.chmod(0o755)
    return [dest]


def write_launcher(app: StagedApp, dest: Path, source_date_epoch: int | None) -> Path:
    """`dest`: the sh launcher followed by `app.root` as a .tar.gz (folder `<artefact name>/`)."""
    top = app.artefact_name()
    archive = write_targz(app.root, dest.with_name(f".{dest.name}.tar.gz"), top,
                          source_date_epoch)
    try:
        digest = sha256_file(archive)
        header = launcher_script(app, top=top, digest=digest, size=archive.stat().st_size)
        with open(dest, "wb") as f:
            f.write(header)
            with open(archive, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
    finally:
        archive.unlink(missing_ok=True)
    dest.chmod(0o755)
    return dest


def launcher_script(app: StagedApp, *, top: str, digest: str, size: int) -> bytes:
    """The sh launcher for an archive of `size` bytes with SHA-256 `digest`, holding folder
    `top` with the app's executable."""
    values = {
        "NAME": app.name, "VERSION": app.version, "SIZE": str(size), "DIGEST": digest,
        "NAME16": digest[:16], "TOP": top, "EXE": app.executable.name,
        "IDENT": cache_name(app.manifest.app.identifier), "CODE": CODE_FOLDER,
    }
    for key in ("TOP", "EXE"):  # file names of our own making; never quoted in the script
        if not re.fullmatch(r"[A-Za-z0-9._-]+", values[key]):
            raise BuildError("onefile", f"unexpected file name {values[key]!r}")
    text = LAUNCHER.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value.replace("\n", " "))
    data = text.encode()
    # the archive starts right after the script: `tail -c +N` counts from 1, and the number
    # takes the placeholder's 8 characters, so the script's length does not change
    return data.replace(b"@OFFSET@", str(len(data) + 1).rjust(8, "0").encode())

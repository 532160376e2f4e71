"""`tar.gz`: the app folder as a reproducible tarball (`<slug>-<version>-linux-<arch>/`)."""

from __future__ import annotations

from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._parts import write_targz
from wvwasi.packager.stage import StagedApp

TOOLS: tuple[str, ...] = ()


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    name = app.artefact_name()
    return [write_targz(app.root, out / f"{name}.tar.gz", name, opts.source_date_epoch)]

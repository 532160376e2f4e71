"""`zip`: the (Windows) app folder as a .zip (`<slug>-<version>-windows-<arch>/`)."""

from __future__ import annotations

from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._archive import write_zip
from wvwasi.packager.stage import StagedApp

TOOLS: tuple[str, ...] = ()


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    name = app.artefact_name()
    return [write_zip(app.root, out / f"{name}.zip", name, opts.source_date_epoch)]

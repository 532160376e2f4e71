"""`onefile`: one executable: the single-file runtime with the payload appended (see stage.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.stage import StagedApp
from wvwasi.packager.tools import BuildError

TOOLS: tuple[str, ...] = ()


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    if app.onefile is None:
        raise BuildError("onefile", "no single-file runtime was staged for this build")
    dest = out / app.artefact_name("-onefile" + app.onefile.suffix)
    shutil.copyfile(app.onefile, dest)
    dest.chmod(0o755)
    return [dest]

"""`dir`: the app folder itself (executable, runtime, payload), ready to run where it is."""

from __future__ import annotations

import shutil
from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.stage import StagedApp

TOOLS: tuple[str, ...] = ()


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    dest = out / app.artefact_name()
    shutil.copytree(app.root, dest, symlinks=True)
    return [dest]

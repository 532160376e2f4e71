"""`dir`: the app folder itself (executable, runtime, payload), ready to run where it is."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.stage import StagedApp

TOOLS: tuple[str, ...] = ()


def _link(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    dest = out / app.artefact_name()
    # hard links: the staged folder is this build's own copy and is deleted after it
    shutil.copytree(app.root, dest, symlinks=True, copy_function=_link)
    return [dest]

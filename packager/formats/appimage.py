"""`appimage`: an AppImage made with appimagetool from an AppDir.

appimagetool (and the AppImage runtime it embeds) is not packaged by Debian and cannot be
fetched by wvwasi, so this format needs `appimagetool` on PATH; without it the build stops before
anything is written, saying so. The AppDir holds the app folder under usr/lib/<slug>, an AppRun
that starts it, the .desktop entry and the icon.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from wvwasi.packager import icons
from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._linux import desktop_entry
from wvwasi.packager.stage import StagedApp
from wvwasi.packager.tools import run

TOOLS = ("appimagetool",)

APPRUN = """#!/bin/sh
here="$(dirname "$(readlink -f "$0")")"
exec "$here/usr/lib/{slug}/{exe}" "$@"
"""


def app_dir(app: StagedApp, root: Path) -> Path:
    """Lay out the AppDir at `root`."""
    shutil.copytree(app.root, root / "usr" / "lib" / app.slug, symlinks=True)
    apprun = root / "AppRun"
    apprun.write_text(APPRUN.format(slug=app.slug, exe=app.executable.name), encoding="utf-8")
    apprun.chmod(0o755)
    ident = app.manifest.app.identifier
    (root / f"{ident}.desktop").write_text(desktop_entry(app, app.slug, ident), encoding="utf-8")
    image = icons.load_icon(app.icon)
    icons.write_png(image, root / f"{ident}.png", 256)
    icons.write_hicolor(image, root / "usr" / "share", ident)
    return root


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    root = app_dir(app, opts.work / f"{app.slug}.AppDir")
    dest = out / f"{app.artefact_name()}.AppImage"
    env = {"ARCH": app.arch.name}
    if opts.source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(opts.source_date_epoch)
    run(["appimagetool", "--no-appstream", root, dest], step="appimage", env=env)
    os.chmod(dest, 0o755)
    return [dest]

"""`dmg`: a compressed macOS disk image holding the `.app` and a link to /Applications (drag to
install), made with hdiutil (macOS only); signed with the app's identity and notarized and
stapled if `[bundle.macos] notarize` is on."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._sign import notarize, sign_disk_image
from wvwasi.packager.stage import StagedApp
from wvwasi.packager.tools import BuildError, run

TOOLS = ("hdiutil",)


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    bundles = opts.built.get("app", ())
    if not bundles:
        raise BuildError("dmg", "needs the .app: build it in the same run (--format app)")
    volume = opts.work / "volume"
    volume.mkdir(parents=True)
    shutil.copytree(bundles[0], volume / bundles[0].name, symlinks=True)
    os.symlink("/Applications", volume / "Applications")
    dest = out / app.artefact_name(".dmg")
    run(["hdiutil", "create", "-volname", app.name, "-srcfolder", volume, "-ov",
         "-format", "UDZO", dest], step="dmg")
    sign_disk_image(app, dest, "dmg")
    notarize(app, dest, "dmg", opts.work)
    return [dest]

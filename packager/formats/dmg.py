"""`dmg`: a compressed macOS disk image of the `.app` (hdiutil; macOS only), notarized if
`[bundle.macos] notarize` is on."""

from __future__ import annotations

from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._sign import notarize
from wvwasi.packager.stage import StagedApp
from wvwasi.packager.tools import BuildError, run

TOOLS = ("hdiutil",)


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    bundles = opts.built.get("app", ())
    if not bundles:
        raise BuildError("dmg", "needs the .app: build it in the same run (--format app)")
    dest = out / app.artefact_name(".dmg")
    run(["hdiutil", "create", "-volname", app.name, "-srcfolder", bundles[0], "-ov",
         "-format", "UDZO", dest], step="dmg")
    notarize(app, dest, "dmg")
    return [dest]

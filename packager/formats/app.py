"""`app`: a macOS application bundle, `<Name>.app`.

Contents/MacOS holds the app folder (the runtime executable, `_internal/` and the payload `app/`,
which frozen_main.py finds beside the executable); Contents/Info.plist is generated as data
(plistlib) and Contents/Resources/<slug>.icns comes from the app icon. On macOS the bundle is
signed with codesign (`[bundle.macos] signing_identity`, ad-hoc without one); elsewhere it is
left unsigned.
"""

from __future__ import annotations

import plistlib
import re
import shutil
from pathlib import Path
from typing import Any

from wvwasi.packager import icons
from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._sign import sign_macos
from wvwasi.packager.stage import StagedApp

TOOLS: tuple[str, ...] = ()


def info_plist(app: StagedApp) -> dict[str, Any]:
    """The Info.plist dictionary."""
    info = app.manifest.app
    short = ".".join(re.findall(r"\d+", info.version.split("-")[0].split("+")[0])[:3])
    return {
        "CFBundleDevelopmentRegion": "en",
        "CFBundleDisplayName": info.name,
        "CFBundleExecutable": app.executable.name,
        "CFBundleIconFile": f"{app.slug}.icns",
        "CFBundleIdentifier": info.identifier,
        "CFBundleInfoDictionaryVersion": "6.0",
        "CFBundleName": info.name[:15],
        "CFBundlePackageType": "APPL",
        "CFBundleShortVersionString": short,
        "CFBundleVersion": info.version,
        "LSMinimumSystemVersion": app.manifest.bundle.macos.minimum_system_version,
        "NSHighResolutionCapable": True,
        "NSHumanReadableCopyright": info.publisher,
    }


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    bundle = out / f"{app.name}.app"
    contents = bundle / "Contents"
    shutil.copytree(app.root, contents / "MacOS", symlinks=True)
    with open(contents / "Info.plist", "wb") as f:
        plistlib.dump(info_plist(app), f, sort_keys=True)
    icons.write_icns(icons.load_icon(app.icon), contents / "Resources" / f"{app.slug}.icns")
    (contents / "PkgInfo").write_bytes(b"APPL????")
    if not sign_macos(app, bundle, "app"):
        opts.log(f"{bundle.name}: not signed (codesign needs macOS)")
    return [bundle]

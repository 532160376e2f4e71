"""`app`: a macOS application bundle, `<Name>.app`, in PyInstaller's own bundle layout
(_macos_bundle.py: the executable alone in Contents/MacOS, code in Contents/Frameworks, data and
the payload in Contents/Resources). Contents/Info.plist is generated as data (plistlib) and
Contents/Resources/<slug>.icns comes from the app icon.

On macOS the bundle is signed inside out (every nested Mach-O and .framework, then the bundle
with the entitlements below; never `--deep`) with `[bundle.macos] signing_identity` (ad-hoc
without one), and notarized and stapled if `notarize = true`; elsewhere it is left unsigned.
"""

from __future__ import annotations

import plistlib
import re
from pathlib import Path
from typing import Any

from wvwasi.packager import icons
from wvwasi.packager.formats import FormatOptions, _associations, _macos_bundle, _sign
from wvwasi.packager.stage import StagedApp

TOOLS: tuple[str, ...] = ()

#: The hardened runtime's entitlements the app needs (docs/build.md says why): wasmtime compiles
#: services to machine code at run time (Cranelift), which the hardened runtime refuses without
#: allow-jit. Nothing else: Python and its libraries are signed with the app's own identity, so
#: library validation holds.
ENTITLEMENTS: dict[str, Any] = {"com.apple.security.cs.allow-jit": True}


def info_plist(app: StagedApp) -> dict[str, Any]:
    """The Info.plist dictionary (with the file associations' and URL schemes' entries)."""
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
        **_associations.plist_entries(app.manifest),
    }


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    bundle = out / f"{app.name}.app"
    contents = bundle / "Contents"
    _macos_bundle.layout(app.root, app.executable.name, contents)
    with open(contents / "Info.plist", "wb") as f:
        plistlib.dump(info_plist(app), f, sort_keys=True)
    icons.write_icns(icons.load_icon(app.icon), contents / "Resources" / f"{app.slug}.icns")
    (contents / "PkgInfo").write_bytes(b"APPL????")
    entitlements = opts.work / "entitlements.plist"
    opts.work.mkdir(parents=True, exist_ok=True)
    with open(entitlements, "wb") as f:
        plistlib.dump(ENTITLEMENTS, f, sort_keys=True)
    if not _sign.can_sign_macos():  # through the module: the one seam tests replace
        opts.log(f"{bundle.name}: not signed (codesign needs macOS)")
        return [bundle]
    _sign.sign_macos(app, bundle, _macos_bundle.nested_code(contents), entitlements, "app")
    _sign.notarize(app, bundle, "app", opts.work)
    return [bundle]

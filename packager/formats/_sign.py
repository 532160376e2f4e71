"""Code signing hooks; secrets come only from environment variables.

Windows Authenticode (`[bundle.windows] sign = true`): osslsigncode (Linux/macOS) or signtool
(Windows), with
  WVWASI_WINDOWS_CERT           path to the PKCS#12 (.pfx/.p12) certificate + key
  WVWASI_WINDOWS_CERT_PASSWORD  its password (may be unset for an unencrypted file)

macOS (only on macOS): codesign with `[bundle.macos] signing_identity` (ad-hoc "-" if unset);
notarization (`notarize = true`) with xcrun notarytool and
  WVWASI_APPLE_ID, WVWASI_APPLE_PASSWORD (an app-specific password), WVWASI_APPLE_TEAM_ID
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from wvwasi.packager.stage import StagedApp
from wvwasi.packager.tools import BuildError, run
from wvwasi.runtime.manifest import MacosBundle

WINDOWS_ENV = ("WVWASI_WINDOWS_CERT", "WVWASI_WINDOWS_CERT_PASSWORD")
APPLE_ENV = ("WVWASI_APPLE_ID", "WVWASI_APPLE_PASSWORD", "WVWASI_APPLE_TEAM_ID")


def signing_tool() -> str:
    """The Authenticode signing tool on this OS."""
    return "signtool" if sys.platform == "win32" else "osslsigncode"


def _env(name: str, step: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise BuildError(step, f"{name} is not set (needed because the manifest asks to sign)")
    return value


def windows_certificate(step: str) -> tuple[str, str]:
    """(certificate path, password) from the environment; BuildError naming what is missing."""
    cert = _env(WINDOWS_ENV[0], step)
    if not Path(cert).is_file():
        raise BuildError(step, f"{WINDOWS_ENV[0]}: {cert} does not exist")
    return cert, os.environ.get(WINDOWS_ENV[1], "")


def sign_windows(app: StagedApp, file: Path, step: str) -> None:
    """Authenticode-sign `file` in place if `[bundle.windows] sign` is on."""
    bundle = app.manifest.bundle.windows
    if app.platform != "windows" or not bundle.sign:
        return
    _sign_file(file, app.name, bundle.timestamp_url, step)


def _sign_file(file: Path, name: str, timestamp_url: str | None, step: str) -> None:
    cert, password = windows_certificate(step)
    if sys.platform == "win32":
        args = ["signtool", "sign", "/f", cert, "/fd", "sha256", "/d", name]
        if password:
            args += ["/p", password]
        if timestamp_url:
            args += ["/tr", timestamp_url, "/td", "sha256"]
        run([*args, file], step=step, redact=[password])
        return
    signed = file.with_name(file.name + ".signed")
    args = ["osslsigncode", "sign", "-pkcs12", cert, "-h", "sha256", "-n", name]
    if password:
        args += ["-pass", password]
    if timestamp_url:
        args += ["-ts", timestamp_url]
    run([*args, "-in", file, "-out", signed], step=step, redact=[password])
    signed.replace(file)


def uninstaller_signing_command(app: StagedApp) -> str | None:
    """The command makensis runs on the uninstaller it writes (`!uninstfinalize`, `%1` is the
    file), or None when the app is not signed: this module's `main`, same certificate."""
    bundle = app.manifest.bundle.windows
    if app.platform != "windows" or not bundle.sign:
        return None
    argv = [sys.executable, "-m", "wvwasi.packager.formats._sign", "%1", app.name,
            bundle.timestamp_url or ""]
    return " ".join(f'"{a}"' for a in argv)


def main(argv: list[str]) -> int:
    """`python -m wvwasi.packager.formats._sign FILE NAME [TIMESTAMP_URL]`: Authenticode-sign
    FILE with the certificate from the environment (makensis signs the uninstaller so)."""
    file, name, *rest = argv
    try:
        _sign_file(Path(file), name, rest[0] if rest and rest[0] else None, "nsis uninstaller")
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def can_sign_macos() -> bool:
    """codesign, notarytool and stapler exist only on macOS."""
    return sys.platform == "darwin"


def _identity(app: StagedApp) -> str:
    return app.manifest.bundle.macos.signing_identity or "-"


def check_macos_signing(macos: MacosBundle, step: str) -> None:
    """Refuse, before anything is built, what cannot work: notarization of an ad-hoc signed
    app, or without every Apple secret in the environment."""
    if not macos.notarize:
        return
    if (macos.signing_identity or "-") == "-":
        raise BuildError(step, "[bundle.macos] notarize = true needs [bundle.macos] "
                         "signing_identity (a Developer ID Application identity): Apple does not "
                         "notarize ad-hoc signed apps")
    for name in APPLE_ENV:
        _env(name, step)


def sign_macos(app: StagedApp, bundle: Path, nested: list[Path], entitlements: Path,
               step: str) -> None:
    """codesign inside out: each nested Mach-O/.framework (innermost first), then the bundle
    with the entitlements. A real identity gets the hardened runtime and a secure timestamp."""
    identity = _identity(app)
    args = ["codesign", "--force", "--sign", identity]
    if identity != "-":
        args += ["--options", "runtime", "--timestamp"]
    for code in nested:
        run([*args, code], step=step)
    run([*args, "--entitlements", entitlements, bundle], step=step)


def sign_disk_image(app: StagedApp, image: Path, step: str) -> None:
    """codesign a .dmg with the app's identity (on macOS, with a real identity only)."""
    identity = _identity(app)
    if can_sign_macos() and identity != "-":
        run(["codesign", "--force", "--sign", identity, "--timestamp", image], step=step)


def notarize(app: StagedApp, file: Path, step: str, work: Path) -> None:
    """Submit `file` (a .app, zipped with ditto for the upload, or a .dmg) for notarization,
    wait for Apple's verdict, then staple the ticket to `file`; only if asked to."""
    if not app.manifest.bundle.macos.notarize or not can_sign_macos():
        return
    apple_id, password, team = (_env(n, step) for n in APPLE_ENV)
    upload = file
    if file.suffix == ".app":
        upload = work / f"{file.stem}-notarize.zip"
        run(["ditto", "-c", "-k", "--keepParent", file, upload], step=step)
    run(["xcrun", "notarytool", "submit", upload, "--apple-id", apple_id, "--password",
         password, "--team-id", team, "--wait"], step=step, redact=[password])
    run(["xcrun", "stapler", "staple", file], step=step)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

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


def sign_macos(app: StagedApp, bundle_path: Path, step: str) -> bool:
    """codesign a .app (on macOS only); False when not on macOS (left unsigned)."""
    if sys.platform != "darwin":
        return False
    identity = app.manifest.bundle.macos.signing_identity or "-"
    args = ["codesign", "--force", "--deep", "--sign", identity]
    if identity != "-":
        args += ["--options", "runtime", "--timestamp"]
    run([*args, bundle_path], step=step)
    return True


def notarize(app: StagedApp, file: Path, step: str) -> None:
    """Submit `file` (a .dmg) for notarization and staple the ticket, if asked to."""
    if not app.manifest.bundle.macos.notarize:
        return
    apple_id, password, team = (_env(n, step) for n in APPLE_ENV)
    run(["xcrun", "notarytool", "submit", file, "--apple-id", apple_id, "--password", password,
         "--team-id", team, "--wait"], step=step, redact=[password])
    run(["xcrun", "stapler", "staple", file], step=step)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

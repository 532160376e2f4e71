"""The WebView2 runtime in the Windows installers (`[bundle.windows] webview2`).

Windows apps draw their window with Microsoft Edge WebView2. Windows 11 and up-to-date Windows 10
have it; elsewhere the installer provides it, the way the manifest says:

  download-bootstrapper  (default) download Microsoft's bootstrapper at install time and run it
  embed-bootstrapper     the bootstrapper (~2 MB) is inside the installer; it downloads the runtime
  offline-installer      the standalone runtime installer (~130 MB) is inside: no network needed
  skip                   nothing (the app shows a message box when the runtime is missing)

Every mode but `skip` acts only when the runtime's registry key (`pv` under CLIENT_KEY, in
HKLM's 32-bit view or HKCU) is missing or `0.0.0.0`. The embedded files come from
WVWASI_WEBVIEW2_BOOTSTRAPPER / WVWASI_WEBVIEW2_INSTALLER when set, else they are downloaded from
Microsoft once into wvwasi's cache.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path

from wvwasi.packager.freeze import cache_dir
from wvwasi.packager.stage import StagedApp
from wvwasi.packager.tools import BuildError

#: The runtime's EdgeUpdate client key; its `pv` value is the installed version.
CLIENT_KEY = r"SOFTWARE\Microsoft\EdgeUpdate\Clients\{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}"
BOOTSTRAPPER_URL = "https://go.microsoft.com/fwlink/p/?LinkId=2124703"
OFFLINE_URLS = {"x64": "https://go.microsoft.com/fwlink/?linkid=2124701",
                "arm64": "https://go.microsoft.com/fwlink/?linkid=2099616"}
#: Arguments for both the bootstrapper and the standalone installer.
INSTALL_ARGS = ("/silent", "/install")
#: mode -> (environment variable, file name inside the installer)
EMBEDDED = {
    "embed-bootstrapper": ("WVWASI_WEBVIEW2_BOOTSTRAPPER", "MicrosoftEdgeWebview2Setup.exe"),
    "offline-installer": ("WVWASI_WEBVIEW2_INSTALLER", "MicrosoftEdgeWebView2RuntimeInstaller.exe"),
}


def download_command(dest: str) -> str:
    """The Windows command line that downloads the bootstrapper to `dest` (PowerShell, which
    every supported Windows has; TLS 1.2 forced for Windows 10's older .NET defaults)."""
    return ("powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command "
            "\"[Net.ServicePointManager]::SecurityProtocol = 'Tls12'; Invoke-WebRequest "
            f"-UseBasicParsing -Uri '{BOOTSTRAPPER_URL}' -OutFile '{dest}'\"")


def mode(app: StagedApp) -> str:
    """The app's `[bundle.windows] webview2` mode."""
    return app.manifest.bundle.windows.webview2


def embedded_file(app: StagedApp, step: str) -> Path | None:
    """The installer to embed for the app's mode (None: nothing to embed)."""
    return installer_for(mode(app), app.arch.windows, step)


def installer_for(webview2: str, arch: str, step: str) -> Path | None:
    """The installer to embed for mode `webview2` on `arch` (Windows spelling), from the
    environment or the cache (downloaded into it if need be); None: nothing to embed. The
    pipeline calls this before building anything, so a bad setting stops it there."""
    if webview2 not in EMBEDDED:
        return None
    variable, name = EMBEDDED[webview2]
    given = os.environ.get(variable)
    if given:
        if not Path(given).is_file():
            raise BuildError(step, f"{variable}: {given} does not exist")
        return Path(given)
    url = BOOTSTRAPPER_URL if webview2 == "embed-bootstrapper" else OFFLINE_URLS[arch]
    dest = cache_dir() / "webview2" / f"{arch}-{name}"
    if not dest.is_file():
        _download(url, dest, step, f"[bundle.windows] webview2 = {webview2!r}", variable)
    return dest


def _download(url: str, dest: Path, step: str, key: str, variable: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=dest.parent, prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                f.write(chunk)
        if Path(temp).read_bytes()[:2] != b"MZ":
            raise OSError(f"{url} did not return a Windows program")
        os.replace(temp, dest)
    except OSError as e:
        Path(temp).unlink(missing_ok=True)
        raise BuildError(step, f"{key}: cannot download {url} ({e}); download it yourself and set "
                         f"{variable} to its path") from None

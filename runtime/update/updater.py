"""The updater: find a newer signed release, download, verify, install (docs/update.md).

`Updater(manifest, executable).check()` -> `Release | None`; `.install(release, progress)`.
`run_update(payload, executable)` is the built app's `--update`: exit status 0 when a new
version was installed or this one is the newest, 1 with one line on stderr otherwise.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from wvwasi.runtime.manifest import Manifest, ManifestError, load_manifest
from wvwasi.runtime.update import fetch, install
from wvwasi.runtime.update.minisign import (
    PublicKey,
    Signature,
    SignatureError,
    parse_public_key,
    parse_signature,
    verify_file,
)
from wvwasi.runtime.update.versions import is_newer, version_key

#: Tauri's names for the OS in `{{target}}` and latest.json's platform keys.
TAURI_OS = {"linux": "linux", "win32": "windows", "darwin": "darwin"}
_ARCHES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
#: Bound on latest.json's strings (notes, urls, signatures).
MAX_FIELD = 64 << 10


class UpdateError(Exception):
    """Why an update did not happen (the installed app is unchanged); one line."""


@dataclass(frozen=True)
class Release:
    """A newer version latest.json offers for this installation."""

    version: str
    notes: str
    date: str
    url: str
    signature: str  # latest.json's `signature` (base64 of the .sig file, or the file's text)
    platform: str  # the key it was found under

    def to_json(self) -> dict[str, str]:
        """What the page's `wvwasi.updater.check()` resolves to."""
        return {"version": self.version, "notes": self.notes, "date": self.date}


def target_os() -> str:
    return TAURI_OS.get(sys.platform, sys.platform)


def target_arch() -> str:
    machine = platform.machine().lower()
    return _ARCHES.get(machine, machine)


class Updater:
    """The update of one installed app."""

    def __init__(self, manifest: Manifest, executable: Path) -> None:
        if manifest.update is None:
            raise UpdateError(f"{manifest.path}: no [update] section: this app does not update "
                              "itself")
        self.manifest = manifest
        self.settings = manifest.update
        self.installation = install.detect(executable)
        self.user_agent = f"wvwasi-updater ({manifest.app.identifier} {manifest.app.version})"

    def endpoints(self) -> list[str]:
        """The endpoint URLs with Tauri's variables filled in."""
        values = {"{{target}}": target_os(), "{{arch}}": target_arch(),
                  "{{current_version}}": self.manifest.app.version}
        urls = []
        for url in self.settings.endpoints:
            for key, value in values.items():
                url = url.replace(key, value)
            urls.append(url)
        return urls

    def platform_keys(self) -> list[str]:
        base = f"{target_os()}-{target_arch()}"
        return [f"{base}-{self.installation.bundle}", base]

    def check(self) -> Release | None:
        """The newer release, or None when this version is the newest. The endpoints are tried
        in order; UpdateError if none answers, or for a malformed or older release."""
        with contextlib.suppress(install.InstallError, OSError), \
                install.locked(self.installation):  # busy: another update is running
            pass  # what killed updates left is removed
        problems = []
        for url in self.endpoints():
            try:
                data = fetch.fetch_json(url, self.user_agent)
            except fetch.FetchError as e:
                problems.append(str(e))
                continue
            return None if data is None else self._release(data, url)
        raise UpdateError(problems[-1] if len(problems) == 1 else
                          f"no update endpoint answered: {'; '.join(problems)}")

    def _release(self, data: dict[str, Any], url: str) -> Release | None:
        current = self.manifest.app.version
        version = _field(data, "version", url)
        try:
            newer = is_newer(version, current)
            version_key(current)
        except ValueError:
            raise UpdateError(f"{url}: `version` {version[:40]!r} is not a version") from None
        if not newer:
            if version_key(version) < version_key(current):
                raise UpdateError(f"{url} offers {version}, older than the installed "
                                  f"{current}: not downgrading")
            return None
        if "platforms" in data:
            platforms = data["platforms"]
            if not isinstance(platforms, dict):
                raise UpdateError(f"{url}: `platforms` is not an object")
            key = next((k for k in self.platform_keys() if k in platforms), None)
            if key is None:
                raise UpdateError(f"{url}: {version} has nothing for this installation "
                                  f"({' or '.join(self.platform_keys())})")
            entry = platforms[key]
            if not isinstance(entry, dict):
                raise UpdateError(f"{url}: `platforms.{key}` is not an object")
        else:  # a server's answer for this one platform (Tauri's dynamic form)
            key, entry = self.platform_keys()[0], data
        # relative urls are resolved against latest.json's own (a folder served as is)
        artefact = urljoin(url, _field(entry, "url", url))
        try:
            fetch.check_url(artefact)
        except fetch.FetchError as e:
            raise UpdateError(str(e)) from None
        return Release(version, _field(data, "notes", url, ""), _field(data, "pub_date", url, ""),
                       artefact, _field(entry, "signature", url), key)

    def install(self, release: Release,
                progress: Callable[[int, int | None], None] | None = None) -> None:
        """Download, verify and install `release`; UpdateError (nothing changed) on failure."""
        inst = self.installation
        try:
            key = parse_public_key(self.settings.pubkey)
            signature = parse_signature(release.signature)
        except SignatureError as e:
            raise UpdateError(f"the update's signature: {e}") from None
        try:
            with install.locked(inst):
                self._install(release, signature, key, progress)
        except install.InstallError as e:
            raise UpdateError(str(e)) from None

    def _install(self, release: Release, signature: Signature, key: PublicKey,
                 progress: Callable[[int, int | None], None] | None) -> None:
        inst = self.installation
        work = install.work_folder(inst)
        keep = inst.bundle in ("nsis", "msi")  # the setup runs after this process exits
        try:
            name = Path(urlsplit(release.url).path).name.replace("\\", "_")
            (work / "download").mkdir()
            artefact = work / "download" / (name if name.strip(".") else "update")
            fetch.download(release.url, artefact, self.user_agent, progress)
            verify_file(artefact, signature, key)  # before anything is unpacked or run
            install.install(inst, artefact, release.version, self.manifest.app.identifier,
                            self.settings.windows.install_mode)
        except (fetch.FetchError, SignatureError, install.InstallError) as e:
            keep = False
            raise UpdateError(str(e)) from None
        finally:
            if not keep:
                shutil.rmtree(work, ignore_errors=True)


def _field(data: dict[str, Any], key: str, url: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if value is None:
        raise UpdateError(f"{url}: `{key}` is missing")
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise UpdateError(f"{url}: `{key}` is not a string (of at most {MAX_FIELD >> 10} KiB)")
    return value


def run_update(payload: Path, executable: Path) -> int:
    """The built app's `--update`: prints what happened; 0 = installed or newest, 1 = not."""
    try:
        manifest = load_manifest(payload)
        updater = Updater(manifest, executable)
        release = updater.check()
        current = f"{manifest.app.name} {manifest.app.version}"
        if release is None:
            print(f"{current} is the newest version")
            return 0
        progress = None
        if sys.stderr.isatty():  # else: one line on stdout, or one error line on stderr
            print(f"updating {current} to {release.version} ({updater.installation.bundle})",
                  file=sys.stderr)
            progress = _terminal_progress()
        updater.install(release, progress)
    except (UpdateError, ManifestError) as e:
        print(f"{executable.name}: update failed: {e}", file=sys.stderr)
        return 1
    if updater.installation.bundle in ("nsis", "msi"):  # the setup waits for this exit
        print(f"{manifest.app.name} {release.version} is being installed by its setup as "
              f"{executable.name} exits (was {manifest.app.version})")
    else:
        print(f"{manifest.app.name} {release.version} installed (was {manifest.app.version})")
    return 0


def _terminal_progress() -> Callable[[int, int | None], None]:
    def show(done: int, total: int | None) -> None:
        part = f"{done * 100 // total:3d} %" if total else f"{done >> 20} MiB"
        print(f"\rdownloading {part}", end="", file=sys.stderr, flush=True)
        if total and done >= total:
            print(file=sys.stderr)
    return show

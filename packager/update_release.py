"""`wvwasi build`'s update files: `ARTEFACT.sig` beside every updatable artefact and a
`latest.json` in Tauri v2's format (docs/update.md), when WVWASI_SIGNING_PRIVATE_KEY is set."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from wvwasi.packager.formats._parts import write_targz
from wvwasi.packager.signing import ENV_KEY, SecretKey, key_from_environment, write_signature
from wvwasi.packager.stage import slugify
from wvwasi.packager.tools import BuildError
from wvwasi.runtime.manifest import Manifest
from wvwasi.runtime.update.minisign import SignatureError, key_id_hex, parse_public_key

LATEST_JSON = "latest.json"
NOTES_ENV = "WVWASI_UPDATE_NOTES"
#: format -> the bundle name of latest.json's `<os>-<arch>-<bundle>` key (runtime/update/install.py
#: installs each); the first of an OS is also written as the plain `<os>-<arch>` key.
UPDATABLE: Mapping[str, Mapping[str, str]] = {
    "linux": {"tar.gz": "targz", "onefile": "onefile", "deb": "deb", "rpm": "rpm"},
    "windows": {"nsis": "nsis", "msi": "msi"},
    "macos": {"app": "app"},  # the bundle, archived as `.app.tar.gz` (Tauri's updater artefact)
}
TAURI_OS = {"linux": "linux", "windows": "windows", "macos": "darwin"}


def signing_key(manifest: Manifest, step: str) -> SecretKey | None:
    """The key from the environment (None if unset), checked against `[update] pubkey`."""
    try:
        key = key_from_environment()
    except SignatureError as e:
        raise BuildError(step, f"{ENV_KEY}: {e}") from None
    if key is not None and manifest.update is not None:
        app_key = parse_public_key(manifest.update.pubkey)
        if app_key != key.public_key:
            raise BuildError(step, f"{ENV_KEY} is key {key.public_key.id_hex}, but [update] "
                             f"pubkey is key {key_id_hex(app_key.key_id)}: the app would refuse "
                             "these updates")
    return key


def sign_release(manifest: Manifest, arch: str, artefacts: Iterable[tuple[str, Path]],
                 key: SecretKey, out: Path, source_date_epoch: int | None) -> list[Path]:
    """Write `.sig` files beside the updatable `(format, path)` artefacts and latest.json in
    `out` (a macOS `.app` is first archived as `<slug>-<version>-macos-<arch>.app.tar.gz`,
    which is signed); returns the files written."""
    system = manifest.platform
    bundles = UPDATABLE.get(system, {})
    platforms: dict[str, dict[str, str]] = {}
    written = []
    base = f"{TAURI_OS.get(system, system)}-{arch}"
    when = int(time.time()) if source_date_epoch is None else source_date_epoch
    for fmt, path in sorted(artefacts, key=lambda a: list(bundles).index(a[0])
                            if a[0] in bundles else len(bundles)):
        if fmt == "app" and fmt in bundles and path.is_dir():  # named like the other
            # artefacts: release hosts rename files with spaces (GitHub: "My.App.app.tar.gz")
            name = f"{slugify(manifest.app.name)}-{manifest.app.version}-macos-{arch}.app.tar.gz"
            path = write_targz(path, out / name, path.name, source_date_epoch)
            written.append(path)
        if fmt not in bundles or not path.is_file():
            continue
        sig = write_signature(path, key, f"timestamp:{when}\tfile:{path.name}\thashed")
        written.append(sig)
        entry = {"signature": base64.b64encode(sig.read_bytes()).decode(),
                 "url": artefact_url(manifest, path.name)}
        platforms[f"{base}-{bundles[fmt]}"] = entry
        platforms.setdefault(base, entry)  # the OS's first updatable format
    if not platforms:
        return written
    latest = out / LATEST_JSON
    latest.write_text(json.dumps(latest_json(manifest, platforms, source_date_epoch), indent=2)
                      + "\n", encoding="utf-8")
    return [*written, latest]


def artefact_url(manifest: Manifest, name: str) -> str:
    """`[update] download_url` + the file name (`{{version}}` filled in); without one, the name
    alone, which the app resolves against latest.json's own URL."""
    base = manifest.update.download_url if manifest.update else None
    if not base:
        return name
    return base.replace("{{version}}", manifest.app.version).rstrip("/") + "/" + name


def latest_json(manifest: Manifest, platforms: dict[str, dict[str, str]],
                source_date_epoch: int | None) -> dict[str, Any]:
    when = time.gmtime(source_date_epoch if source_date_epoch is not None else time.time())
    return {
        "version": manifest.app.version,
        "notes": os.environ.get(NOTES_ENV, ""),
        "pub_date": time.strftime("%Y-%m-%dT%H:%M:%SZ", when),
        "platforms": dict(sorted(platforms.items())),
    }

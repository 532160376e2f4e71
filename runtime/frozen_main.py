"""Entry point of the frozen runtime executable (what PyInstaller freezes): find the app payload and
run it. Usage (parse_args(), the one place that reads the command line):

    <app> [FILE | URL ...]        the window; files and URLs are what a desktop passes when the
                                  user opens a document or link with the app
                                  (runtime/launch.py): the page's `open` event
    <app> --self-test[=headless]  check every service, print a JSON report (headless: services
                                  and bridge only, no window, for machines without a display)
    <app> --serve                 services and bridge without a window: prints the launch URL
                                  (with this run's secret) on stdout, as `wvwasi serve` does,
                                  and serves until Ctrl+C, SIGTERM or, when stdin is a pipe, its end
    <app> --version               prints the app's name and version
    <app> --update                installs a newer signed release (runtime/update/,
                                  docs/update.md); exit status 0 when installed or newest

The payload (see packager/stage.py) is looked for, in order:
1. `app/` beside the executable (an installed or unpacked app folder), or in a macOS `.app`
   (executable in Contents/MacOS) Contents/Resources/app;
2. a zip archive appended to the executable (the Windows/macOS single-file build; Linux's is a
   launcher that extracts the whole app folder and runs this executable from it, so 1. finds
   the payload, see packager/formats/onefile.py): extracted once into
   `<user cache>/wvwasi-code/<identifier>/onefile/<digest>/` (runtime/paths.py, `code_root`:
   no preopen reaches it) and reused by later launches. `<digest>` hashes the archive's
   directory (every member's name, size and CRC-32), so a new build gets a new folder (older
   ones are removed). At every launch each extracted file must have the SHA-256 that the
   archive's own `app/payload.json` lists (read from the executable, not from the folder), else
   the folder is extracted again. A cache that cannot be written falls back to the runtime's
   temporary folder (`sys._MEIPASS`, removed at exit).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

PAYLOAD = "app"
MANIFEST = "wvwasi.toml"
DONE = ".extracted.json"  # written last: {member name: size}
DIGESTS = f"{PAYLOAD}/payload.json"  # the payload's file digests (modules.PAYLOAD_DIGESTS)


def find_payload(executable: Path) -> Path:
    """The payload folder for `executable` (extracting an appended archive if need be)."""
    beside = executable.parent / PAYLOAD
    if executable.parent.name == "MacOS" and executable.parent.parent.name == "Contents":
        beside = executable.parent.parent / "Resources" / PAYLOAD
    if (beside / MANIFEST).is_file():
        return beside
    try:
        archive = zipfile.ZipFile(executable)
    except (OSError, zipfile.BadZipFile):
        raise SystemExit(
            f"{executable.name}: no app found: expected {beside} or an archive appended to "
            "the executable (was it built with `wvwasi build`?)"
        ) from None
    with archive:
        for name in archive.namelist():
            if not name.startswith(f"{PAYLOAD}/") or ".." in name.split("/"):
                raise SystemExit(f"{executable.name}: corrupt app archive (entry {name!r})")
        try:
            return extract_cached(archive, onefile_cache(archive)) / PAYLOAD
        except OSError:
            target = Path(getattr(sys, "_MEIPASS", None) or tempfile.mkdtemp(prefix="wvwasi-app-"))
            archive.extractall(target)
            return target / PAYLOAD


def archive_digest(archive: zipfile.ZipFile) -> str:
    """Identifies the archive's content: every member's name, size and CRC-32."""
    listing = [(i.filename, i.file_size, i.CRC) for i in archive.infolist()]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


def onefile_cache(archive: zipfile.ZipFile) -> Path:
    """`<code root>/<identifier>/onefile`: beside the app's compile cache, out of every
    preopen's reach (not `$CACHE`)."""
    from wvwasi.runtime.manifest import tomllib
    from wvwasi.runtime.paths import app_code_dir

    try:
        ident = tomllib.loads(archive.read(f"{PAYLOAD}/{MANIFEST}").decode())["app"]["identifier"]
    except (KeyError, ValueError, TypeError):
        ident = ""
    return app_code_dir(str(ident)) / "onefile"


def expected_digests(archive: zipfile.ZipFile) -> dict[str, str]:
    """`{member name: SHA-256}` for every file member, from the archive's own payload listing
    (a member it does not list, or no listing: the member's own digest, computed now)."""
    try:
        listed = json.loads(archive.read(DIGESTS))["sha256"]
    except (KeyError, ValueError, TypeError):
        listed = {}
    digests = {}
    for info in archive.infolist():
        if info.is_dir():
            continue
        digest = listed.get(info.filename[len(PAYLOAD) + 1:]) if isinstance(listed, dict) else None
        if not isinstance(digest, str):
            digest = hashlib.sha256(archive.read(info)).hexdigest()
        digests[info.filename] = digest
    return digests


def extract_cached(archive: zipfile.ZipFile, cache: Path) -> Path:
    """The archive extracted in `cache/<digest>` (extracted now only if it is not there
    intact); OSError if the cache cannot be written."""
    target = cache / archive_digest(archive)
    sizes = {i.filename: i.file_size for i in archive.infolist() if not i.is_dir()}
    digests = expected_digests(archive)
    if _intact(target, sizes, digests):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache))
    try:
        archive.extractall(temp)
        (temp / DONE).write_text(json.dumps(sizes), encoding="utf-8")
        if target.exists() and not _intact(target, sizes, digests):  # damaged: replace it
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(temp, target)
        except OSError:
            if not _intact(target, sizes, digests):  # not another launch that got there first
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    for old in cache.iterdir():  # earlier builds of this app
        if old != target and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    return target


def _intact(target: Path, sizes: dict[str, int], digests: dict[str, str]) -> bool:
    """Is `target` the archive extracted completely, every file a regular one with the size
    and SHA-256 the archive lists? Each file found so is noted (modules.note_checked): the
    service loader does not hash a `.cwasm` a second time moments later. Safe because no
    service can write this folder (under the code root, which every preopen is refused)."""
    from wvwasi.runtime.host.modules import note_checked, sha256_file

    try:
        if json.loads((target / DONE).read_text(encoding="utf-8")) != sizes:
            return False
        for name, size in sizes.items():
            path = target / name
            if path.lstat().st_size != size or sha256_file(path, follow=False) != digests[name]:
                return False
            note_checked(path, digests[name])
        return True
    except (OSError, ValueError, KeyError):
        return False


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The built app's command line (exits with status 2 and a usage line on a bad one)."""
    parser = argparse.ArgumentParser(prog=Path(sys.executable).name, add_help=False)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--self-test", nargs="?", const=True, default=False,
                      choices=(True, "headless"))
    mode.add_argument("--serve", action="store_true")
    mode.add_argument("--version", action="store_true")
    mode.add_argument("--update", action="store_true")
    parser.add_argument("open", nargs="*", metavar="FILE | URL")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    payload = find_payload(Path(sys.executable).resolve())
    if args.version:
        from wvwasi.runtime.manifest import tomllib

        app = tomllib.loads((payload / MANIFEST).read_text(encoding="utf-8"))["app"]
        print(f"{app['name']} {app['version']}", flush=True)
        return 0
    if args.update:
        from wvwasi.runtime.update.updater import run_update

        return run_update(payload, Path(sys.executable).resolve())

    from wvwasi.runtime.app import run_app

    return run_app(payload, resources=payload / "resources", self_test=args.self_test,
                   serve=args.serve, open_args=args.open)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl+C before a window or `--serve` took the signals over
        sys.exit(130)  # stopping.INTERRUPTED

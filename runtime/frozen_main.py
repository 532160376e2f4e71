"""Entry point of the frozen runtime executable (what PyInstaller freezes): find the app payload and
run it. Usage: `<app> [--self-test[=headless]]` (headless: services and bridge only, no
window, for machines without a display).

The payload (see packager/stage.py) is looked for, in order:
1. `app/` beside the executable (an installed or unpacked app folder), or in a macOS `.app`
   (executable in Contents/MacOS) Contents/Resources/app;
2. a zip archive appended to the executable (the single-file build): extracted into the
   runtime's temporary folder (`sys._MEIPASS`), which the runtime removes at exit.
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

PAYLOAD = "app"
MANIFEST = "wvwasi.toml"


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
    target = Path(getattr(sys, "_MEIPASS", None) or tempfile.mkdtemp(prefix="wvwasi-app-"))
    with archive:
        for name in archive.namelist():
            if not name.startswith(f"{PAYLOAD}/") or ".." in name.split("/"):
                raise SystemExit(f"{executable.name}: corrupt app archive (entry {name!r})")
        archive.extractall(target)
    return target / PAYLOAD


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    unknown = [a for a in args if a not in ("--self-test", "--self-test=headless")]
    if unknown:
        print(f"usage: {Path(sys.executable).name} [--self-test[=headless]]", file=sys.stderr)
        return 2
    payload = find_payload(Path(sys.executable).resolve())

    from wvwasi.runtime.app import run_app

    self_test = "headless" if "--self-test=headless" in args else "--self-test" in args
    return run_app(payload, resources=payload / "resources", self_test=self_test)


if __name__ == "__main__":
    sys.exit(main())

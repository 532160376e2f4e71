"""What a launch asks the app to open: its command line sorted into files, URLs and arguments.

A desktop opens a document or link by running the app with it (the .desktop entry's `%U`, the
Windows `"%1"` command): an argument whose scheme is one of `[app] url_schemes` is a URL, a
`file://` URL or a path (relative to the launch's cwd) of an existing regular file is a file,
anything else stays an argument. A file is granted read-write only when it matches an `editor`
association (`[[bundle.file_associations]]`), otherwise read-only. At most MAX_ITEMS arguments
of MAX_ARG characters each are taken; more is a ValueError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from wvwasi.runtime.manifest import Manifest

MAX_ITEMS = 256
MAX_ARG = 8192


@dataclass(frozen=True)
class OpenedFile:
    """A document the launch named: its absolute path and the mode the page gets."""

    path: Path
    mode: Literal["ro", "rw"]


@dataclass(frozen=True)
class Launch:
    """One launch's files, URLs, other arguments and working folder."""

    files: tuple[OpenedFile, ...]
    urls: tuple[str, ...]
    args: tuple[str, ...]
    cwd: str

    def detail(self) -> dict[str, Any]:
        """The page's `open` event detail (docs/page-api.md)."""
        return {
            "files": [{"path": str(f.path), "name": f.path.name, "mode": f.mode}
                      for f in self.files],
            "urls": list(self.urls), "args": list(self.args), "cwd": self.cwd,
        }


def classify(argv: list[str] | tuple[str, ...], cwd: str, manifest: Manifest) -> Launch:
    """Sort `argv` (the launch's arguments, not the program) as the module docstring says."""
    if len(argv) > MAX_ITEMS or any(not isinstance(a, str) or len(a) > MAX_ARG for a in argv):
        raise ValueError(f"a launch takes at most {MAX_ITEMS} arguments of {MAX_ARG} characters")
    schemes = manifest.app.url_schemes
    editor = {ext for a in manifest.bundle.file_associations if a.role == "editor"
              for ext in a.extensions}
    files: list[OpenedFile] = []
    urls: list[str] = []
    args: list[str] = []
    for arg in argv:
        scheme = arg.split(":", 1)[0].lower() if ":" in arg else ""
        if scheme in schemes:
            urls.append(arg)
            continue
        text = unquote(urlsplit(arg).path) if scheme == "file" else arg
        path = Path(cwd, text) if text and "\0" not in text else None
        if path is not None and path.is_file():
            real = Path(os.path.realpath(path))
            mode: Literal["ro", "rw"] = "rw" if real.suffix[1:].lower() in editor else "ro"
            files.append(OpenedFile(real, mode))
        else:
            args.append(arg)
    return Launch(tuple(files), tuple(urls), tuple(args), cwd)

"""Host path variables (`$APPDATA`, `$CACHE`, ...) in preopen `host` values, and `PathContext`.

A variable may only begin a host path: `$APPDATA/notes`. The app-owned folders (`$APPDATA`,
`$CACHE`, `$TEMP`) are created on first use; `$TEMP` is a per-run folder removed by `close()`.

What wvwasi runs or loads as code at run time (onefile extractions, compile caches) lives in
`code_root()`, which no variable names or lies inside: its name is not a valid identifier, so it
is no app's `$CACHE`/`$APPDATA` (docs/security.md, "The app's code is out of services' reach").
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple

import platformdirs

from .host.tempdirs import LockedTempDir

if TYPE_CHECKING:
    from wvwasi.runtime.manifest import Manifest

#: Every variable a preopen `host` may start with.
VARIABLES = ("APPDATA", "CACHE", "DOCUMENTS", "DOWNLOADS", "HOME", "TEMP", "RESOURCES")
#: Variables naming folders the app owns: created (with the sub-path) when resolved.
APP_OWNED = ("APPDATA", "CACHE", "TEMP")

#: Variables naming the app's own folders: links beneath them may not lead out of them.
CONTAINED = (*APP_OWNED, "RESOURCES")


#: The user-cache folder holding every app's run-time code (never an identifier: no dot).
CODE_FOLDER = "wvwasi-code"


def cache_name(identifier: str) -> str:
    """The app's folder name in a user cache (also the Linux onefile launcher's)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", identifier).lstrip(".") or "wvwasi-app"


def code_root() -> Path:
    """Where every app's run-time code lives: `<user cache>/wvwasi-code` (~/.cache on Linux)."""
    return Path(platformdirs.user_cache_dir(CODE_FOLDER, appauthor=False))


def build_cache_dir() -> Path:
    """wvwasi's build-time cache (`WVWASI_CACHE_DIR` overrides the per-user default), which
    holds the compile cache `wvwasi build` ships artefacts from."""
    override = os.environ.get("WVWASI_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("wvwasi", False))


def app_code_dir(identifier: str) -> Path:
    """The app's own code folder: `onefile/<digest>/` extractions and `modules/` (its compile
    cache) beneath it."""
    return code_root() / cache_name(identifier)


class Location(NamedTuple):
    """A preopen `host` value located: `base`/`rest`."""

    base: Path  # a variable's folder ($RESOURCES for a relative path), or an absolute path
    rest: str  # the path beneath `base` ("" for `base` itself)
    create: bool  # missing folders beneath `base` are created (app-owned variables)
    contained: bool  # `rest` is opened beneath `base` (the app's own folders, relative paths)


_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)(?:[/\\](.*))?\Z", re.DOTALL)
_LATE_VARIABLE = re.compile(r".\$[A-Za-z_]", re.DOTALL)


def parse_host(raw: str) -> tuple[str | None, str]:
    """Split `"$NAME/sub/path"` into `("NAME", "sub/path")`; `(None, raw)` without a variable.

    ValueError (a message for "<key>: ...") for an unknown variable, one that is not at the
    start, or a `..` that would climb out of the variable's folder.
    """
    if not raw.startswith("$"):
        if _LATE_VARIABLE.search(raw):
            raise ValueError(f'expected a variable only at the start of the path, got "{raw}"')
        return None, raw
    m = _VARIABLE.match(raw)
    if not m:
        raise ValueError(f'expected "$NAME" or "$NAME/path", got "{raw}"')
    name, rest = m[1], (m[2] or "").replace("\\", "/")
    if name not in VARIABLES:
        known = ", ".join(f"${v}" for v in VARIABLES)
        raise ValueError(f'unknown variable "${name}" (known: {known})')
    if ".." in PurePosixPath(rest).parts:
        raise ValueError(f'expected a path inside ${name} without "..", got "{raw}"')
    return name, rest.strip("/")


class PathContext:
    """Expands host path variables for one app; owns its per-run `$TEMP` folder."""

    def __init__(
        self,
        root: Path,
        identifier: str,
        *,
        resources: Path | None = None,
        base_dirs: Mapping[str, Path] | None = None,
    ) -> None:
        self.identifier = identifier
        #: `$RESOURCES`, also the base of relative paths: the project root during development
        self.resources = Path(resources or root).absolute()
        unknown = set(base_dirs or ()) - set(VARIABLES)
        if unknown:
            raise ValueError(f"unknown path variables in base_dirs: {sorted(unknown)}")
        self._dirs: dict[str, Path] = {k: Path(v) for k, v in (base_dirs or {}).items()}
        self._temp: LockedTempDir | None = None
        self._lock = threading.Lock()
        self._code: dict[Path, str] = {code_root(): "the code folder of wvwasi apps",
                                       build_cache_dir(): "wvwasi's build cache"}

    @classmethod
    def for_app(
        cls,
        manifest: Manifest,
        *,
        resources: Path | None = None,
        base_dirs: Mapping[str, Path] | None = None,
    ) -> PathContext:
        """The context for `manifest`; `resources` is the shipped folder when frozen
        (default: the project root); `base_dirs` overrides variables (tests)."""
        return cls(
            manifest.root, manifest.app.identifier, resources=resources, base_dirs=base_dirs
        )

    def variable(self, name: str) -> Path:
        """The folder `$name` stands for (app-owned ones are created)."""
        if name not in VARIABLES:
            raise ValueError(f'unknown variable "${name}"')
        with self._lock:
            if name == "TEMP" and "TEMP" not in self._dirs:
                self._temp = LockedTempDir(self.identifier)  # swept if the app is killed
                self._dirs["TEMP"] = self._temp.path
            path = self._dirs.get(name) or self._default(name)
            if name in APP_OWNED:
                path.mkdir(parents=True, exist_ok=True)
            return path

    def _default(self, name: str) -> Path:
        app = self.identifier
        return {
            "APPDATA": lambda: Path(platformdirs.user_data_dir(app, appauthor=False)),
            "CACHE": lambda: Path(platformdirs.user_cache_dir(app, appauthor=False)),
            "DOCUMENTS": lambda: Path(platformdirs.user_documents_dir()),
            "DOWNLOADS": lambda: Path(platformdirs.user_downloads_dir()),
            "HOME": Path.home,
            "RESOURCES": lambda: self.resources,
        }[name]()

    def resolve(self, raw: str) -> Path:
        """The absolute host path for a preopen `host` value (relative: beneath `$RESOURCES`,
        so a built app finds what `bundle.resources` ships where `wvwasi run` found it)."""
        name, rest = parse_host(raw)
        if name is None:
            path = Path(rest)
            return path if path.is_absolute() else self.resources / path
        base = self.variable(name)
        path = base / rest if rest else base
        if rest and name in APP_OWNED:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def resolve_file(self, raw: str) -> Path:
        """The absolute host path of a file the manifest names (`net.ca`; relative: as in
        `resolve`); nothing is created."""
        name, rest = parse_host(raw)
        if name is None:
            path = Path(rest)
            return path if path.is_absolute() else self.resources / path
        return self.variable(name) / rest

    def locate(self, raw: str) -> Location:
        """Where a preopen `host` value lies (see `Location`). A relative path lies beneath
        `$RESOURCES` (unless `..` leads out of it, then it counts as absolute)."""
        name, rest = parse_host(raw)
        if name is not None:
            return Location(self.variable(name), rest, name in APP_OWNED, name in CONTAINED)
        base = self.resources
        path = Path(os.path.normpath(base / rest))
        if path.is_relative_to(base) and not Path(rest).is_absolute():
            return Location(base, path.relative_to(base).as_posix(), False, True)
        return Location(path, "", False, False)

    def add_code_folder(self, path: Path, what: str) -> None:
        """Mark `path` as holding code wvwasi runs or loads (a compile cache, the app's own
        folder): no writable preopen or grant may be, contain or lie inside it."""
        with self._lock:
            self._code[Path(path)] = what

    def code_folders(self) -> dict[str, str]:
        """Every code folder as its real path -> what it is."""
        with self._lock:
            return {os.path.realpath(p): what for p, what in self._code.items()}

    @property
    def cache_dir(self) -> Path:
        """`$CACHE`, created."""
        return self.variable("CACHE")

    def close(self) -> None:
        """Remove this run's `$TEMP` folder (idempotent)."""
        with self._lock:
            temp, self._temp = self._temp, None
            if temp is not None:
                self._dirs.pop("TEMP", None)
                temp.close()

    def __enter__(self) -> PathContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

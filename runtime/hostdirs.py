"""A spawn's host folders (manifest preopens and grants), opened beneath the folders services can
write.

Nested preopens are resolved safely, not refused: a folder that lies inside a folder some service
may write (an `rw` preopen of any service in the manifest) is opened *beneath* that writable
folder (`hostpath.Root`), step by step from the outermost one. A symlink planted there can then
lead elsewhere inside the writable folder (where the planter could have put the files anyway),
never out of it. Folders inside no writable folder are opened beneath their `$VARIABLE` folder or
the project root; an absolute path is its own root. Paths are compared after expanding variables
(`$APPDATA/shared` with its real path), so two spellings through different symlinked parents of
the same place are not recognized as nested.
"""

from __future__ import annotations

import os
from pathlib import Path

from .hostpath import EscapeError, Root
from .manifest import Manifest
from .paths import PathContext


class HostDirs:
    """Opens the host folders of spawns for one manifest and path context."""

    def __init__(self, manifest: Manifest, paths: PathContext) -> None:
        self._manifest = manifest
        self._paths = paths
        self._writable: list[str] | None = None

    def writable(self) -> list[str]:
        """Every folder some service may write (its rw preopens), as compared paths."""
        if self._writable is None:
            found = {
                self._where(p.host)[0]
                for s in self._manifest.services.values()
                for p in s.preopens
                if p.mode == "rw"
            }
            self._writable = sorted(found)
        return self._writable

    def preopen(self, raw: str) -> Root:
        """Open a manifest preopen's `host` value (app-owned folders are created)."""
        target, base, rest, create = self._where(raw)
        return self._open(target, base, rest, create)

    def grant(self, host: Path | str) -> Root:
        """Open a user-picked folder (an absolute path)."""
        path = os.path.normpath(host)
        return self._open(path, path, "", False)

    def _where(self, raw: str) -> tuple[str, str, str, bool]:
        """(compared path, real root path, path beneath it, create) of a preopen host value."""
        base, rest, create = self._paths.locate(raw)
        if not rest:  # an absolute path, or a variable's folder itself
            path = os.path.normpath(base)
            real = os.path.realpath(base) if create or raw.startswith("$") else path
            return real, real, "", create
        real = os.path.realpath(base)
        return os.path.normpath(os.path.join(real, rest)), real, rest, create

    def _open(self, target: str, base: str, rest: str, create: bool) -> Root:
        """Open `target` = `base`/`rest`, beneath every writable folder that encloses it."""
        outer = {w for w in self.writable() if _strictly_inside(target, w)}
        if rest:
            outer.add(base)
        steps = sorted(outer, key=len)  # all enclose `target`: each lies inside the one before
        if not steps:
            return Root.open(target)
        root = Root.open(steps[0])
        previous = steps[0]
        try:
            for folder in [*steps[1:], target]:
                inner = root.subdir(os.path.relpath(folder, previous), create=create)
                root.close()
                root, previous = inner, folder
        except EscapeError as e:
            root.close()
            raise EscapeError(
                f"{target} leads out of {previous} through a symlink or '..': refused (a "
                "service that can write there may have planted it)"
            ) from e
        except BaseException:
            root.close()
            raise
        return root


def _strictly_inside(path: str, folder: str) -> bool:
    return path != folder and path.startswith(folder.rstrip(os.sep) + os.sep)

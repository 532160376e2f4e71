"""A spawn's host folders (manifest preopens and grants), opened beneath the folders services can
write.

Nested preopens are resolved safely, not refused: a folder that lies inside a folder some service
may write (an `rw` preopen of any service in the manifest) is opened *beneath* that writable
folder (`hostpath.Root`), step by step from the outermost one. A symlink planted there can then
lead elsewhere inside the writable folder (where the planter could have put the files anyway),
never out of it. Beneath the app's own folders (`$APPDATA`, `$CACHE`, `$TEMP`, `$RESOURCES`, the
project folder for relative paths) no link may lead out of that folder either. The user's folders
(`$HOME`, `$DOCUMENTS`, `$DOWNLOADS`) and absolute paths are the user's or the developer's own:
their links are followed unless a writable folder encloses them. Paths are compared after
expanding variables (`$APPDATA/shared` with its real path), so two spellings of one place through
different symlinked parents are not recognized as nested.

No folder opened writable may be, contain or lie inside a code folder (`PathContext.code_folders`:
compile caches, onefile extractions, the app's own folder): a service that could write there
could change machine code or page scripts wvwasi later runs. Such a spawn or mount is refused,
naming both folders (docs/security.md, "The app's code is out of services' reach").
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..manifest import Manifest
from ..paths import PathContext
from .hostpath import EscapeError, Root, inside


class HostDirs:
    """Opens the host folders of spawns for one manifest and path context."""

    def __init__(self, manifest: Manifest, paths: PathContext) -> None:
        self._manifest = manifest
        self._paths = paths
        self._writable: list[str] | None = None

    def writable(self) -> list[str]:
        """Every folder some service or page-supplied module may write (rw preopens), as
        compared paths."""
        if self._writable is None:
            page = self._manifest.page.preopens  # page-supplied modules may write these too
            found = {
                self._where(p.host)[0]
                for p in [*(q for s in self._manifest.services.values() for q in s.preopens),
                          *page]
                if p.mode == "rw"
            }
            self._writable = sorted(found)
        return self._writable

    def preopen(self, raw: str, mode: str = "rw") -> Root:
        """Open a manifest preopen's `host` value (app-owned folders are created); `mode`
        "rw" (the default) refuses a folder that overlaps a code folder."""
        target, base, create = self._where(raw)
        return self._checked(self._open(target, base, create), raw, mode)

    def grant(self, host: Path | str, mode: str = "rw") -> Root:
        """Open a user-picked folder (an absolute path); `mode` as for `preopen`."""
        return self._checked(self._open(os.path.normpath(host), None, False), str(host), mode)

    def code_reach(self, raw: str, real: str | None = None) -> str | None:
        """Why host folder `raw` (real path `real`, else expanded) may not be opened
        read-write: it is, contains or lies inside a code folder. None if it may."""
        real = real or os.path.realpath(self._where(raw)[0])
        for code, what in self._paths.code_folders().items():
            if inside(code, real) or inside(real, code):
                where = "is" if code == real else "would contain" if inside(code, real) \
                    else "lies inside"
                return (f"{raw} ({real}) {where} {what} {code}: refused read-write (a service "
                        "that can write there could change code wvwasi runs); grant a folder "
                        "beside it, or read-only")
        return None

    def _checked(self, root: Root, raw: str, mode: str) -> Root:
        """`root`, unless it may be written and overlaps a code folder (then EscapeError)."""
        reason = None if mode == "ro" else self.code_reach(raw, root.real)
        if reason is not None:
            root.close()
            raise EscapeError(errno.EPERM, reason)
        return root

    def _where(self, raw: str) -> tuple[str, str | None, bool]:
        """(compared path, the root it must stay beneath or None, create) of a `host` value:
        variables expanded to their real folder, the rest kept as written."""
        where = self._paths.locate(raw)
        if raw.startswith("$") or where.contained:
            base = os.path.realpath(where.base)
        else:
            base = os.path.normpath(where.base)  # an absolute path: compared as written
        target = os.path.normpath(os.path.join(base, where.rest)) if where.rest else base
        return target, base if where.contained and where.rest else None, where.create

    def _open(self, target: str, base: str | None, create: bool) -> Root:
        """Open `target` beneath `base` (if any) and every writable folder that encloses it."""
        outer = {w for w in self.writable() if _strictly_inside(target, w)}
        if base is not None:
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

"""Host folders one page lends to its page-supplied modules (MOUNT records).

A page-supplied module runs in the page's browser engine; a folder of the machine reaches it only
as a mount: the page names a folder the user picked (a grant of this page) or a `[page] preopens`
entry of the manifest, at most with that folder's mode, and gets a random mount id. The engine
then sends the module's file calls on that folder to `POST /__wvwasi/fs/MOUNT` (server.py), which
`runtime/hostfs.py` answers beneath the folder. A mount ends with a TERMINATE of its record id
(the worker ended) or with its page; either closes every handle it had open.
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import Executor
from typing import Any

from ..hostdirs import HostDirs
from ..hostfs import HandleBudget, HostFolder
from ..hostpath import EscapeError
from ..manifest import Manifest
from .grants import Grants
from .protocol import ProtocolError
from .specs import Refused

#: Folders one page may have lent at once.
MOUNTS_PER_PAGE = 16
#: Open files and folders of all the mounts of one page.
HANDLES_PER_PAGE = 256


class Mounts:
    """The mounts of one page session; `registry` (the bridge's) maps mount ids to folders."""

    def __init__(self, manifest: Manifest, dirs: HostDirs, grants: Grants,
                 registry: dict[str, HostFolder], budget: HandleBudget, pool: Executor) -> None:
        self._manifest = manifest
        self._dirs = dirs
        self._grants = grants
        self._registry = registry
        self._budget = HandleBudget(HANDLES_PER_PAGE, budget)
        self._pool = pool
        self._mine: dict[int, str] = {}  # record id -> mount id
        self._opening = 0

    async def mount(self, ident: int, spec: dict[str, Any]) -> dict[str, str]:
        """Open the folder a MOUNT spec names; the MOUNTED record's JSON, or Refused."""
        mode = spec.get("mode")
        if mode not in (None, "ro", "rw"):
            raise ProtocolError('spec.mode must be "ro" or "rw"')
        if len(self._mine) + self._opening >= MOUNTS_PER_PAGE:
            raise Refused("limit", f"this page already lends {MOUNTS_PER_PAGE} host folders "
                          "to its modules: terminate workers it no longer needs")
        if isinstance(spec.get("grant"), str):
            grant = self._grants.lookup(spec["grant"])
            granted, open_root = grant.mode, lambda: self._dirs.grant(grant.path)
            what = f"the grant for folder '{grant.path.name}'"
        elif isinstance(spec.get("preopen"), str):
            found = [p for p in self._manifest.page.preopens if p.guest == spec["preopen"]]
            if not found:
                known = ", ".join(p.guest for p in self._manifest.page.preopens) or "none"
                raise Refused("permission", (
                    f"no [page] preopens entry with guest = \"{spec['preopen']}\" in "
                    f"{self._manifest.path.name} (page preopens: {known})"))
            pre = found[0]
            granted, open_root = pre.mode, lambda: self._dirs.preopen(pre.host)
            what = f"[page] preopens entry \"{pre.guest}\""
        else:
            raise ProtocolError("a MOUNT spec names a grant or a preopen (strings)")
        mode = mode or granted
        if mode == "rw" and granted != "rw":
            raise Refused("permission", f"{what} is read-only: it cannot be lent read-write")
        self._opening += 1
        try:
            root = await asyncio.get_running_loop().run_in_executor(self._pool, open_root)
        except EscapeError as e:
            raise Refused("permission", str(e)) from None
        except OSError as e:
            raise Refused("start", f"{what}: cannot open the folder: {e.strerror or e}") from None
        finally:
            self._opening -= 1
        token = secrets.token_urlsafe(24)
        self._registry[token] = HostFolder(root, mode, self._budget)
        self._mine[ident] = token
        return {"mount": token, "mode": mode}

    def owns(self, ident: int) -> bool:
        return ident in self._mine

    def unmount(self, ident: int) -> None:
        """End the mount of record `ident` (its worker ended)."""
        token = self._mine.pop(ident, None)
        if token is not None:
            folder = self._registry.pop(token, None)
            if folder is not None:
                folder.close()

    def clear(self) -> None:
        """End every mount (the page is gone)."""
        for ident in list(self._mine):
            self.unmount(ident)

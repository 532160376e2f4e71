"""Host folders one page lends to its page-supplied modules (MOUNT and FS_CALL records).

A page-supplied module runs in the page's browser engine; a folder of the machine reaches it only
as a mount: the page names a folder the user picked (a grant of this page) or a `[page] preopens`
entry of the manifest, at most with that folder's mode, in a MOUNT record (answered by MOUNTED
or ERROR). The module's Worker then blocks in `Atomics.wait` while the page relays each of its
file calls on that folder as an FS_CALL record of the mount's id; `hostfs.py` answers it
beneath the folder, on the bridge's file-call threads, in an FS_REPLY record. One call per mount
is in flight at a time (its Worker waits for the answer); a page that sends another, or a call
over `MAX_CALL` bytes, is disconnected (1008); calls for a mount that has ended are dropped.
A mount ends with a TERMINATE of its id (the worker ended) or with its page; either closes
every handle it had open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from ..host.hostdirs import HostDirs
from ..host.hostpath import EscapeError
from ..manifest import Manifest
from .grants import Grants
from .hostfs import MAX_IO, MAX_JSON, HandleBudget, HostFolder, lend
from .protocol import PolicyError, ProtocolError
from .specs import Refused

#: Folders one page may have lent at once.
MOUNTS_PER_PAGE = 16
#: Open files and folders of all the mounts of one page.
HANDLES_PER_PAGE = 256
#: The largest FS_CALL payload: a JSON head and at most MAX_IO bytes of data.
MAX_CALL = 4 + MAX_JSON + MAX_IO


class Mounts:
    """The mounts of one page session; `registry` (the bridge's) holds every page's folders."""

    def __init__(self, manifest: Manifest, dirs: HostDirs, grants: Grants,
                 registry: set[HostFolder], budget: HandleBudget, pool: Executor) -> None:
        self._manifest = manifest
        self._dirs = dirs
        self._grants = grants
        self._registry = registry
        self._budget = HandleBudget(HANDLES_PER_PAGE, budget)
        self._pool = pool
        self._mine: dict[int, HostFolder] = {}  # record id -> its folder
        self._busy: set[int] = set()  # mounts with a call in flight
        self._opening = 0

    async def mount(self, ident: int, spec: dict[str, Any]) -> dict[str, str]:
        """Open the folder a MOUNT spec names; the MOUNTED record's JSON, or Refused."""
        mode = spec.get("mode")
        if mode not in (None, "ro", "rw"):
            raise ProtocolError('spec.mode must be "ro" or "rw"')
        if len(self._mine) + self._opening >= MOUNTS_PER_PAGE:
            raise Refused("limit", f"this page already lends {MOUNTS_PER_PAGE} host folders "
                          "to its modules: terminate workers it no longer needs")
        open_root: Callable[[], Any]
        if isinstance(spec.get("grant"), str):
            grant = self._grants.lookup(spec["grant"])
            granted, path = grant.mode, grant.path
            open_root = lambda: self._dirs.grant(path)  # noqa: E731
            what = f"the grant for folder '{grant.path.name}'"
        elif isinstance(spec.get("preopen"), str):
            found = [p for p in self._manifest.page.preopens if p.guest == spec["preopen"]]
            if not found:
                known = ", ".join(p.guest for p in self._manifest.page.preopens) or "none"
                raise Refused("permission", (
                    f"no [page] preopens entry with guest = \"{spec['preopen']}\" in "
                    f"{self._manifest.path.name} (page preopens: {known})"))
            host = found[0].host
            granted, what = found[0].mode, f"[page] preopens entry \"{found[0].guest}\""
            open_root = lambda: self._dirs.preopen(host)  # noqa: E731
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
        try:
            folder = lend(root, mode, self._budget)  # its root counts as a handle
        except OSError:
            raise Refused("limit", (
                f"this page's host folders already hold {self._budget.limit} open files and "
                "folders (or the bridge's, for all pages): close some")) from None
        self._mine[ident] = folder
        self._registry.add(folder)
        return {"mode": mode}

    def owns(self, ident: int) -> bool:
        return ident in self._mine

    def begin(self, ident: int, body: bytes) -> HostFolder | None:
        """Check one FS_CALL of mount `ident`: its folder (None once the mount has ended: the
        record is dropped). PolicyError for a call over MAX_CALL or a second one in flight."""
        if len(body) > MAX_CALL:
            raise PolicyError(f"a file call of {len(body)} bytes is over {MAX_CALL}")
        folder = self._mine.get(ident)
        if folder is None:
            return None
        if ident in self._busy:
            raise PolicyError("a second file call on a mount before the first was answered")
        self._busy.add(ident)
        return folder

    async def answer(self, ident: int, folder: HostFolder, body: bytes) -> bytes:
        """Run a call `begin` admitted, on the file-call threads: the FS_REPLY payload."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, folder.call, body)
        finally:
            self._busy.discard(ident)

    def unmount(self, ident: int) -> None:
        """End the mount of record `ident` (its worker ended); never waits for a call in
        progress (that call closes the handles when it ends)."""
        folder = self._mine.pop(ident, None)
        if folder is not None:
            self._registry.discard(folder)
            folder.close()

    def clear(self) -> None:
        """End every mount (the page is gone)."""
        for ident in list(self._mine):
            self.unmount(ident)

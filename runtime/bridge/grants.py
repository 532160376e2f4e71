"""Folders the user picked for one page: the native picker, and the page's grant ids.

A grant id is random and valid only on the connection that asked for it; a spawn that names it
mounts the folder with at most the mode the user granted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..manifest import Preopen
from .protocol import ProtocolError
from .specs import Refused, is_text

log = logging.getLogger("wvwasi.bridge")

#: Opens the native folder picker; the chosen folder, or None when the user cancels.
Picker = Callable[[], "Path | str | None"]


@dataclass(frozen=True)
class Grant:
    """A picked folder and the mode the user granted."""

    path: Path
    mode: Literal["ro", "rw"]


class Grants:
    """The grants of one page session."""

    def __init__(self, picker: Picker | None, pool: Executor) -> None:
        self._picker = picker
        self._pool = pool
        self._grants: dict[str, Grant] = {}

    async def pick(self, spec: dict[str, Any]) -> dict[str, str]:
        """Show the picker; the GRANT record's JSON, or Refused."""
        mode = spec.get("mode", "ro")
        if mode not in ("ro", "rw"):
            raise Refused("invalid", f'mode must be "ro" or "rw", got {mode!r}')
        if self._picker is None:
            raise Refused("unavailable", (
                "requestDirectory() needs the app's native folder picker, and this page is not "
                "shown in an app window (wvwasi serve has none): run the app with wvwasi run"
            ))
        try:
            chosen = await asyncio.get_running_loop().run_in_executor(self._pool, self._picker)
        except Exception as e:  # the window's dialog failed (e.g. the window is closing)
            log.exception("the folder picker failed")
            raise Refused("unavailable", f"the folder picker failed: {e}") from None
        if chosen is None:
            raise Refused("cancelled", "the user cancelled the folder picker")
        path = Path(chosen).resolve()
        if not path.is_dir():
            raise Refused("start", f"the picked folder {path} does not exist")
        grant_id = secrets.token_urlsafe(24)
        self._grants[grant_id] = Grant(path, mode)
        return {"grant": grant_id, "name": path.name, "mode": mode}

    def preopen(self, item: Any) -> Preopen:
        """The preopen for one `grants` item of a spawn spec."""
        if not (isinstance(item, dict) and isinstance(item.get("grant"), str)
                and is_text(item.get("guest")) and item.get("mode", "ro") in ("ro", "rw")):
            raise ProtocolError('spec.grants items must be {grant, guest, mode: "ro"|"rw"}')
        grant = self.lookup(item["grant"])
        mode = item.get("mode", grant.mode)
        if mode == "rw" and grant.mode != "rw":
            raise Refused("permission", (
                f"the grant for folder '{grant.path.name}' is read-only: request it with "
                "WasiWorker.requestDirectory({mode: 'rw'}) to let a service write to it"
            ))
        return Preopen(guest=item["guest"], host=str(grant.path), mode=mode)

    def lookup(self, grant_id: str) -> Grant:
        """The grant `grant_id` of this page, or Refused."""
        grant = self._grants.get(grant_id)
        if grant is None:
            raise Refused("permission", (
                "unknown directory grant: grants come from WasiWorker.requestDirectory() and "
                "are valid only in the page session that requested them"
            ))
        return grant

    def clear(self) -> None:
        """Forget every grant (the page is gone)."""
        self._grants.clear()

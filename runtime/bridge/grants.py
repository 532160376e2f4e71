"""Folders and files the user picked for one page: the native pickers, and the page's grant ids.

A grant id is random and valid only on the connection that asked for it; a spawn that names a
folder grant mounts the folder with at most the mode the user granted. A file grant (from
`wvwasi.dialog.openFile/saveFile`, or a document the app was launched with) is read and, if
read-write, replaced whole by the page (`read()`/`write()`, at most MAX_FILE bytes); it is
never mounted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import tempfile
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..manifest import Preopen
from ..regularfile import FileProblem, read_regular
from .protocol import MAX_FRAME, ProtocolError
from .specs import Refused, is_text

log = logging.getLogger("wvwasi.bridge")

#: Opens the native folder picker; the chosen folder, or None when the user cancels.
Picker = Callable[[], "Path | str | None"]
#: The largest file a page reads or writes through a file grant (it travels in one frame).
MAX_FILE = MAX_FRAME - (1 << 20)
#: Launched documents (`wvwasi.app` open events) by token: their path and mode.
Launched = Callable[[str], "tuple[Path, Literal['ro', 'rw']] | None"]


@dataclass(frozen=True)
class FileRequest:
    """What `wvwasi.dialog.openFile/saveFile` asks the native file dialog for."""

    kind: Literal["open", "save"]
    accept: tuple[str, ...] = ()  # extensions without the dot; empty: any file
    multiple: bool = False
    suggested_name: str = ""


#: Opens the native file dialog; the chosen files, or None when the user cancels.
FilePicker = Callable[[FileRequest], "list[Path] | None"]
#: Runs one `wvwasi.window` call (name, arguments) on the app window: its JSON result, or
#: Refused (the app's `App.window_call`).
AppCalls = Callable[[str, list], Any]
#: The app's `App.window_call`: one call (window, name, arguments) on window `window`
#: (auth.MAIN or a second window's name).
WindowCalls = Callable[[str, str, list], Any]


@dataclass(frozen=True)
class Grant:
    """A picked folder or file and the mode the user granted."""

    path: Path
    mode: Literal["ro", "rw"]
    kind: Literal["directory", "file"] = "directory"


class Grants:
    """The grants of one page session."""

    def __init__(self, picker: Picker | None, pool: Executor,
                 file_picker: FilePicker | None = None, launched: Launched | None = None,
                 io_pool: Executor | None = None) -> None:
        self._picker = picker
        self._pool = pool
        self._file_picker = file_picker
        self._launched = launched
        self._io_pool = io_pool or pool
        self._grants: dict[str, Grant] = {}

    async def pick(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Show the picker (`spec.kind`: "directory", "open", "save", or "launched" with a
        launched document's token); the GRANT record's JSON, or Refused."""
        mode = spec.get("mode", "ro")
        if mode not in ("ro", "rw"):
            raise Refused("invalid", f'mode must be "ro" or "rw", got {mode!r}')
        kind = spec.get("kind", "directory")
        if kind in ("open", "save", "launched"):
            return {"grants": await self._pick_files(kind, mode, spec)}
        if kind != "directory":
            raise Refused("invalid", f"unknown kind of pick {kind!r}")
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
        return self._add(Grant(path, mode))

    async def _pick_files(self, kind: str, mode: str, spec: dict[str, Any]
                          ) -> list[dict[str, str]]:
        if kind == "launched":
            found = self._launched(str(spec.get("token"))) if self._launched else None
            if found is None:
                raise Refused("permission", "unknown launched document")
            return [self._add(Grant(found[0], found[1], "file"))]
        if self._file_picker is None:
            raise Refused("unavailable", (
                "the file dialogs need the app's native window, and this page is not shown in "
                "one (wvwasi serve has none): run the app with wvwasi run"))
        accept = spec.get("accept", [])
        name = spec.get("suggestedName", "")
        if not (isinstance(accept, list) and all(is_text(a) for a in accept) and len(accept) < 64
                and isinstance(name, str) and len(name) < 256 and "/" not in name):
            raise Refused("invalid", "accept must be a list of extensions, suggestedName a "
                          "file name")
        request = FileRequest(kind, tuple(a.lstrip(".") for a in accept),  # type: ignore[arg-type]
                              bool(spec.get("multiple")) and kind == "open", name)
        try:
            chosen = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._file_picker, request)
        except Exception as e:
            log.exception("the file dialog failed")
            raise Refused("unavailable", f"the file dialog failed: {e}") from None
        if not chosen:
            raise Refused("cancelled", "the user cancelled the file dialog")
        grants = []
        for picked in chosen[: 1 if not request.multiple else 256]:
            path = Path(picked).resolve()
            if kind == "open" and not path.is_file():
                raise Refused("start", f"the picked file {path} does not exist")
            if kind == "save" and (path.is_dir() or not path.parent.is_dir()):
                raise Refused("start", f"cannot save to {path}")
            grants.append(self._add(Grant(path, "rw" if kind == "save" else mode, "file")))
        return grants

    def _add(self, grant: Grant) -> dict[str, str]:
        grant_id = secrets.token_urlsafe(24)
        self._grants[grant_id] = grant
        return {"grant": grant_id, "name": grant.path.name, "mode": grant.mode,
                "kind": grant.kind}

    async def read(self, grant_id: Any) -> bytes:
        """The content of the file grant `grant_id` (at most MAX_FILE bytes), or Refused."""
        grant = self._file_grant(grant_id)

        def read() -> bytes:
            try:
                return read_regular(grant.path, MAX_FILE)
            except FileProblem as e:
                raise Refused("start", f"cannot read {grant.path.name}: {e.reason}") from None

        return await asyncio.get_running_loop().run_in_executor(self._io_pool, read)

    async def write(self, grant_id: Any, data: bytes) -> None:
        """Replace the file of read-write grant `grant_id` with `data`: written beside it,
        then renamed over it (never half-written), or Refused."""
        grant = self._file_grant(grant_id)
        if grant.mode != "rw":
            raise Refused("permission", f"the grant for file '{grant.path.name}' is read-only")

        def write() -> None:
            try:
                fd, tmp = tempfile.mkstemp(prefix=".wvwasi-", dir=grant.path.parent)
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    # mkstemp's 0600 would stick: keep the file's mode, or a new file's usual one
                    mode = grant.path.stat().st_mode & 0o7777 if grant.path.exists() else 0o644
                    os.chmod(tmp, mode)
                    os.replace(tmp, grant.path)
                except BaseException:
                    os.unlink(tmp)
                    raise
            except OSError as e:
                raise Refused("start", f"cannot write {grant.path.name}: {e.strerror}") from None

        await asyncio.get_running_loop().run_in_executor(self._io_pool, write)

    def _file_grant(self, grant_id: Any) -> Grant:
        grant = self.lookup(grant_id) if isinstance(grant_id, str) else None
        if grant is None or grant.kind != "file":
            raise Refused("permission", "not a file grant of this page")
        return grant

    def preopen(self, item: Any) -> Preopen:
        """The preopen for one `grants` item of a spawn spec."""
        if not (isinstance(item, dict) and isinstance(item.get("grant"), str)
                and is_text(item.get("guest")) and item.get("mode", "ro") in ("ro", "rw")):
            raise ProtocolError('spec.grants items must be {grant, guest, mode: "ro"|"rw"}')
        grant = self.lookup(item["grant"])
        if grant.kind == "file":
            raise Refused("permission", (
                f"'{grant.path.name}' is a file grant: pass its content (grant.read()) in "
                "`files` instead of mounting it"))
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

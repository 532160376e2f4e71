"""One page session: a WebSocket connection that multiplexes the page's workers.

Records from the page are handled in order, so each worker's messages keep their order; each
worker is a `link.WorkerLink` with its credit windows. Output of every worker is packed into
frames by one pump task; small input credits wait briefly to share a frame with the answer.
When the connection closes, its dedicated instances and runs are terminated, its background
subscriptions closed and its directory grants forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web

from ..events import Event, Exited
from ..host import ServiceLimitError, SpawnOptions, Subscription
from ..instance import Instance
from ..manifest import Manifest, Preopen, Service
from ..modules import WasmLoadError
from .link import WorkerLink, error_json
from .protocol import (
    FRAME_TARGET,
    HEADER,
    U32,
    WINDOW,
    Op,
    ProtocolError,
    iter_records,
    json_record,
    read_u32,
    record,
    split_json,
)

if TYPE_CHECKING:
    from ..host import ServiceHost

log = logging.getLogger("wvwasi.bridge")

#: Opens the native folder picker; the chosen folder, or None when the user cancels.
Picker = Callable[[], "Path | str | None"]

_WINDOW_OPS = (Op.SEND, Op.STDIN)
#: How long small input credits may wait for the service's answer to travel with.
CREDIT_DELAY = 0.002
#: What host.spawn/subscribe raise for a spawn that is refused or cannot start.
_SPAWN_ERRORS = (PermissionError, LookupError, ValueError, OSError, RuntimeError, WasmLoadError)


@dataclass(frozen=True)
class _Grant:
    path: Path
    mode: Literal["ro", "rw"]


class Refused(Exception):
    """A request the page may make but that fails; reported to the page as an ERROR record."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def refusal(e: Exception) -> Refused:
    """The page-facing form of an error raised by the host for a spawn or run."""
    if isinstance(e, Refused):
        return e
    if isinstance(e, PermissionError):
        return Refused("permission", str(e))
    if isinstance(e, LookupError):
        return Refused("lookup", str(e))
    if isinstance(e, ServiceLimitError):
        return Refused("limit", str(e))
    return Refused("start", str(e))


class Session:
    """The bridge side of one page's WebSocket."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        manifest: Manifest,
        host: ServiceHost,
        picker: Picker | None,
        pool: Executor,
    ) -> None:
        self._ws = ws
        self._manifest = manifest
        self._host = host
        self._picker = picker
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._links: dict[int, WorkerLink] = {}
        self._runs: dict[int, Instance | None] = {}  # None while starting
        self._grants: dict[str, _Grant] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._out: deque[bytes] = deque()
        self._out_lock = threading.Lock()
        self._wake = asyncio.Event()
        self._wake_pending = False
        self._credits: dict[int, int] = {}  # input credit not yet sent, by worker id
        self._credit_timer = False
        self._closed = False

    # -- output: any thread -> the pump -------------------------------------------------------

    def post(self, rec: bytes) -> None:
        """Queue a record for the page (thread-safe); records are packed into frames."""
        with self._out_lock:
            if self._closed:
                return
            self._out.append(rec)
            self._wake_locked()

    def credit(self, ident: int, amount: int) -> None:
        """Return input credit to the page (thread-safe). Small amounts wait up to
        CREDIT_DELAY to travel in the same frame as the service's answer."""
        with self._out_lock:
            if self._closed:
                return
            owed = self._credits[ident] = self._credits.get(ident, 0) + amount
            if owed >= WINDOW // 2:
                self._wake_locked()
            elif not self._credit_timer:
                self._credit_timer = True
                self._call_soon(self._arm_credit_timer)

    def _arm_credit_timer(self) -> None:
        self._loop.call_later(CREDIT_DELAY, self._credit_due)

    def _credit_due(self) -> None:
        with self._out_lock:
            self._credit_timer = False
            if self._credits:
                self._wake_locked()

    def _wake_locked(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            self._call_soon(self._wake.set)

    def _call_soon(self, callback: Callable[[], None]) -> None:
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the bridge's loop has stopped
            self._closed = True

    def _take_frame(self) -> bytes | None:
        with self._out_lock:
            parts = [record(Op.CREDIT, i, U32.pack(n)) for i, n in self._credits.items()]
            self._credits.clear()
            if not self._out and not parts:
                self._wake_pending = False
                return None
            size = sum(map(len, parts))
            while self._out and (not parts or size + len(self._out[0]) <= FRAME_TARGET):
                rec = self._out.popleft()
                parts.append(rec)
                size += len(rec)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (frame := self._take_frame()) is not None:
                try:
                    await self._ws.send_bytes(frame)
                except ConnectionError:
                    return  # the page is gone; serve() cleans up

    def reload(self) -> None:
        """Tell the page to reload itself."""
        self.post(record(Op.RELOAD, 0))

    def error(self, ident: int, e: Refused) -> None:
        """Report a refused spawn, run or folder request to the page."""
        self.post(json_record(Op.ERROR, ident, {"kind": e.kind, "message": str(e)}))

    # -- input ----------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Handle the page's frames until the connection closes, then clean up."""
        pump = asyncio.create_task(self._pump())
        try:
            async for msg in self._ws:
                if msg.type != WSMsgType.BINARY:
                    await self._ws.close(code=WSCloseCode.UNSUPPORTED_DATA,
                                         message=b"binary frames only")
                    break
                try:
                    await self._frame(msg.data)
                except ProtocolError as e:
                    log.warning("closing a page connection: %s", e)
                    await self._ws.close(code=WSCloseCode.PROTOCOL_ERROR,
                                         message=str(e).encode()[:120])
                    break
        except ConnectionError:
            pass  # the page went away mid-frame
        finally:
            pump.cancel()
            self.shutdown()

    async def _frame(self, frame: bytes) -> None:
        for op, ident, payload in iter_records(frame):
            if op is Op.SPAWN:
                spec, rest = split_json(payload)
                await self._spawn(ident, spec, rest)
            elif op in (Op.SEND, Op.STDIN, Op.CLOSE_STDIN):
                self._input(op, ident, payload)
            elif op is Op.TERMINATE:
                self._terminate(ident)
            elif op is Op.CREDIT:
                link = self._links.get(ident)
                credit = read_u32(payload)
                if link is not None:
                    link.credit(credit)
            elif op is Op.RUN:
                spec, rest = split_json(payload)
                self._start_run(ident, spec, rest)
            elif op is Op.PICK:
                spec, _ = split_json(payload)
                self._task(self._pick(ident, spec))
            else:
                raise ProtocolError(f"{op.name} records travel from the bridge to the page")

    def _task(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _input(self, op: Op, ident: int, payload: memoryview) -> None:
        link = self._links.get(ident)
        if link is None:
            return  # the worker has ended; its EXIT record is on its way to the page
        raw = payload.tobytes()
        data: bytes | str = raw
        if op is Op.SEND and link.service.ipc == "lines":
            try:
                data = raw.decode()
            except UnicodeDecodeError:
                raise ProtocolError("a lines message must be UTF-8") from None
            if "\n" in data:
                raise ProtocolError("a lines message cannot contain a newline")
        elif op is not Op.SEND and link.background:
            raise ProtocolError("a background service's stdin is shared: use SEND")
        link.enqueue(op, data, len(payload) + HEADER.size if op in _WINDOW_OPS else 0)

    def _terminate(self, ident: int) -> None:
        link = self._links.get(ident)
        if link is not None:
            link.terminate()
        run = self._runs.get(ident)
        if run is not None:
            run.terminate("terminated by the page")

    # -- spawn, run, pick -----------------------------------------------------------------------

    def _service(self, spec: dict[str, Any]) -> Service:
        name = spec.get("service")
        if not isinstance(name, str):
            raise ProtocolError("spec.service must be a string")
        try:
            return self._manifest.service(name)
        except LookupError as e:
            raise Refused("lookup", str(e)) from None

    def _request(
        self, ident: int, spec: dict[str, Any], blob: memoryview, *, run: bool
    ) -> tuple[Service, SpawnOptions, bytes]:
        """Check a SPAWN/RUN record: (service, options, stdin). Refused goes back to the page;
        ProtocolError closes the connection."""
        if ident == 0 or ident in self._links or ident in self._runs:
            raise ProtocolError(f"id {ident} is in use")
        stdin = b""
        if run:
            size = spec.get("stdin", 0)
            if not isinstance(size, int) or not 0 <= size <= len(blob):
                raise ProtocolError("spec.stdin must be the byte length of the stdin at the end")
            stdin = bytes(blob[len(blob) - size :])
            blob = blob[: len(blob) - size]
        options = self._options(spec, blob)
        service = self._service(spec)
        if service.kind == "background":
            if run:
                raise Refused("permission", (
                    f"service '{service.name}' is kind = \"background\": connect to it with "
                    "new WasiWorker(), WasiWorker.run() is for tasks"
                ))
            if options != SpawnOptions():
                raise Refused("permission", (
                    f"service '{service.name}' is kind = \"background\": its one instance is "
                    "shared by the whole app, so a page cannot give it args, env, files, scratch "
                    "or grants"
                ))
        return service, options, stdin

    async def _spawn(self, ident: int, spec: dict[str, Any], blob: memoryview) -> None:
        try:
            service, options, _ = self._request(ident, spec, blob, run=False)
        except Refused as e:
            self.error(ident, e)
            return
        link = self._links[ident] = WorkerLink(self, ident, service)
        try:
            handle: Instance | Subscription
            if link.background:
                handle = await self._loop.run_in_executor(
                    self._pool, self._host.subscribe, service.name, link.on_event
                )
            else:
                handle = await self._loop.run_in_executor(
                    self._pool,
                    lambda: self._host.spawn(service.name, options, on_event=link.on_event),
                )
        except _SPAWN_ERRORS as e:
            self._links.pop(ident, None)
            self.error(ident, refusal(e))
            return
        link.attach(handle)
        if self._closed:
            link.close()

    def _start_run(self, ident: int, spec: dict[str, Any], blob: memoryview) -> None:
        try:
            service, options, stdin = self._request(ident, spec, blob, run=True)
        except Refused as e:
            self.error(ident, e)
            return
        self._runs[ident] = None
        self._task(self._run(ident, service, options, stdin))

    async def _run(
        self, ident: int, service: Service, options: SpawnOptions, stdin: bytes
    ) -> None:
        done: asyncio.Future[Exited] = self._loop.create_future()

        def on_event(event: Event) -> None:
            if isinstance(event, Exited):
                self._loop.call_soon_threadsafe(_resolve, done, event)

        try:
            try:
                inst = await self._loop.run_in_executor(
                    self._pool,
                    lambda: self._host.spawn(service.name, options, on_event=on_event,
                                             capture=True),
                )
            except _SPAWN_ERRORS as e:
                self.error(ident, refusal(e))
                return
            self._runs[ident] = inst
            if self._closed:
                inst.terminate("stopped because its page closed")
            try:
                if stdin:
                    inst.write_stdin(stdin)
                inst.close_stdin()
            except BrokenPipeError:
                pass  # it ended before reading its input
            exited = await done
        finally:
            self._runs.pop(ident, None)
        stdout, stderr = bytes(inst.stdout), bytes(inst.stderr)
        head = {"exitCode": exited.code, "stdoutLength": len(stdout), "error": error_json(exited)}
        self.post(json_record(Op.RESULT, ident, head, stdout, stderr))

    async def _pick(self, ident: int, spec: dict[str, Any]) -> None:
        mode = spec.get("mode", "ro")
        if mode not in ("ro", "rw"):
            self.error(ident, Refused("invalid", f'mode must be "ro" or "rw", got {mode!r}'))
            return
        if self._picker is None:
            self.error(ident, Refused("unavailable", (
                "requestDirectory() needs the app's native folder picker, and this page is not "
                "shown in an app window (wvwasi serve has none): run the app with wvwasi run"
            )))
            return
        try:
            chosen = await self._loop.run_in_executor(self._pool, self._picker)
        except Exception as e:  # the window's dialog failed (e.g. the window is closing)
            log.exception("the folder picker failed")
            self.error(ident, Refused("unavailable", f"the folder picker failed: {e}"))
            return
        if chosen is None:
            self.error(ident, Refused("cancelled", "the user cancelled the folder picker"))
            return
        path = Path(chosen).resolve()
        if not path.is_dir():
            self.error(ident, Refused("start", f"the picked folder {path} does not exist"))
            return
        grant_id = secrets.token_urlsafe(24)
        self._grants[grant_id] = _Grant(path, mode)
        self.post(json_record(Op.GRANT, ident, {"grant": grant_id, "name": path.name,
                                                "mode": mode}))

    def _options(self, spec: dict[str, Any], blob: memoryview) -> SpawnOptions:
        """SpawnOptions from a spawn spec; the host checks them against the manifest."""
        args = _strings(spec.get("args", []), "args")
        env = spec.get("env", [])
        if not isinstance(env, list) or not all(
            isinstance(kv, list) and len(kv) == 2 and all(isinstance(x, str) for x in kv)
            for kv in env
        ):
            raise ProtocolError("spec.env must be a list of [name, value] strings")
        files: dict[str, bytes] = {}
        pos = 0
        for item in spec.get("files", []):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], int) and 0 <= item[1] <= len(blob) - pos):
                raise ProtocolError("spec.files must be [guest path, size] pairs within the record")
            files[item[0]] = bytes(blob[pos : pos + item[1]])
            pos += item[1]
        scratch = spec.get("scratch", False)
        if not isinstance(scratch, bool):
            raise ProtocolError("spec.scratch must be a boolean")
        grants = spec.get("grants", [])
        if not isinstance(grants, list):
            raise ProtocolError("spec.grants must be a list")
        return SpawnOptions(args=tuple(args), env=tuple((k, v) for k, v in env), files=files,
                            scratch=scratch, grants=tuple(self._grant(g) for g in grants))

    def _grant(self, item: Any) -> Preopen:
        if not (isinstance(item, dict) and isinstance(item.get("grant"), str)
                and isinstance(item.get("guest"), str) and item.get("mode", "ro") in ("ro", "rw")):
            raise ProtocolError('spec.grants items must be {grant, guest, mode: "ro"|"rw"}')
        grant = self._grants.get(item["grant"])
        if grant is None:
            raise Refused("permission", (
                "unknown directory grant: grants come from WasiWorker.requestDirectory() and "
                "are valid only in the page session that requested them"
            ))
        mode = item.get("mode", grant.mode)
        if mode == "rw" and grant.mode != "rw":
            raise Refused("permission", (
                f"the grant for folder '{grant.path.name}' is read-only: request it with "
                "WasiWorker.requestDirectory({mode: 'rw'}) to let a service write to it"
            ))
        return Preopen(guest=item["guest"], host=str(grant.path), mode=mode)

    # -- teardown -------------------------------------------------------------------------------

    def forget(self, link: WorkerLink) -> None:
        """Drop an ended worker (thread-safe)."""
        def drop() -> None:
            if self._links.get(link.id) is link:
                del self._links[link.id]

        with self._out_lock:
            if not self._closed:
                self._loop.call_soon_threadsafe(drop)

    def shutdown(self) -> None:
        """The page is gone: end its workers and runs, forget its grants (idempotent)."""
        with self._out_lock:
            self._closed = True
            self._out.clear()
        for link in list(self._links.values()):
            link.close()
        for inst in list(self._runs.values()):
            if inst is not None:
                inst.terminate("stopped because its page closed")
        self._links.clear()
        self._grants.clear()

    async def close(self) -> None:
        """Close the connection from the bridge's side."""
        await self._ws.close(code=WSCloseCode.GOING_AWAY, message=b"the app is closing")
        self.shutdown()


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ProtocolError(f"spec.{key} must be a list of strings")
    return value


def _resolve(future: asyncio.Future[Exited], event: Exited) -> None:
    if not future.done():
        future.set_result(event)

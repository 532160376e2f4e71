"""One page session: a WebSocket connection that multiplexes the page's workers.

Records from the page are handled in order, so each worker's messages keep their order; each
worker is a `link.WorkerLink` with its credit windows. Output goes through the session's
`flow.Outbox`; folder grants live in its `grants.Grants`; specs are parsed by `specs`.
When the connection closes, its dedicated instances and runs are terminated, its background
subscriptions closed and its directory grants forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..events import Event, Exited
from ..host import SpawnOptions, Subscription
from ..instance import Instance
from ..manifest import Manifest, Service
from ..modules import WasmLoadError
from .flow import Outbox
from .grants import Grants, Picker
from .link import WorkerLink, error_json
from .protocol import (
    HEADER,
    Op,
    ProtocolError,
    iter_records,
    json_record,
    read_u32,
    record,
    split_json,
)
from .specs import Refused, check_background, refusal, service_of, spawn_options, split_stdin

if TYPE_CHECKING:
    from ..host import ServiceHost

log = logging.getLogger("wvwasi.bridge")

_WINDOW_OPS = (Op.SEND, Op.STDIN)
#: What host.spawn/subscribe raise for a spawn that is refused or cannot start.
_SPAWN_ERRORS = (PermissionError, LookupError, ValueError, OSError, RuntimeError, WasmLoadError)


class Session:
    """The bridge side of one page's WebSocket: dispatches its records."""

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
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._outbox = Outbox(self._loop)
        self._grants = Grants(picker, pool)
        self._links: dict[int, WorkerLink] = {}
        self._runs: dict[int, Instance | None] = {}  # None while starting
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def _closed(self) -> bool:
        return self._outbox.closed

    # -- output ---------------------------------------------------------------------------------

    def post(self, rec: bytes) -> None:
        """Queue a record for the page (thread-safe)."""
        self._outbox.post(rec)

    def credit(self, ident: int, amount: int) -> None:
        """Return input credit to the page (thread-safe)."""
        self._outbox.credit(ident, amount)

    def reload(self) -> None:
        """Tell the page to reload itself."""
        self.post(record(Op.RELOAD, 0))

    def error(self, ident: int, e: Refused) -> None:
        """Report a refused spawn, run or folder request to the page."""
        self.post(json_record(Op.ERROR, ident, {"kind": e.kind, "message": str(e)}))

    # -- input ----------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Handle the page's frames until the connection closes, then clean up."""
        pump = asyncio.create_task(self._outbox.pump(self._ws))
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

    def _request(
        self, ident: int, spec: dict[str, Any], blob: memoryview, *, run: bool
    ) -> tuple[Service, SpawnOptions, bytes]:
        """Check a SPAWN/RUN record: (service, options, stdin). Refused goes back to the page;
        ProtocolError closes the connection."""
        if ident == 0 or ident in self._links or ident in self._runs:
            raise ProtocolError(f"id {ident} is in use")
        stdin = b""
        if run:
            stdin, blob = split_stdin(spec, blob)
        options = spawn_options(spec, blob, self._grants.preopen)
        service = service_of(self._manifest, spec)
        check_background(service, options, run=run)
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
        try:
            grant = await self._grants.pick(spec)
        except Refused as e:
            self.error(ident, e)
            return
        self.post(json_record(Op.GRANT, ident, grant))

    # -- teardown -------------------------------------------------------------------------------

    def forget(self, link: WorkerLink) -> None:
        """Drop an ended worker (thread-safe)."""
        def drop() -> None:
            if self._links.get(link.id) is link:
                del self._links[link.id]

        if not self._closed:
            self._outbox.call_soon(drop)

    def shutdown(self) -> None:
        """The page is gone: end its workers and runs, forget its grants (idempotent)."""
        self._outbox.close()
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


def _resolve(future: asyncio.Future[Exited], event: Exited) -> None:
    if not future.done():
        future.set_result(event)

"""One page session: a WebSocket connection that multiplexes the page's workers.

Records from the page are handled in order, so each worker's messages keep their order; each
worker is a `link.WorkerLink` with its credit windows. Output goes through the session's
`flow.Outbox`; folder grants live in its `grants.Grants`; specs are parsed by `specs`.
When the connection closes, its dedicated instances and runs are terminated (also those still
starting), its background subscriptions closed and its directory grants forgotten.

Bounds (docs/security.md, "Bridge"): instance slots and the run queue are `runs.Admission`'s.
At most STARTS_PER_PAGE of the page's instances are starting at once on the bridge's shared pool
(the page's further SPAWNs wait: back-pressure on its socket, so a flooding page cannot take the
pool from other pages). At most PICKS_PER_PAGE folder requests are pending. While the page's
outbox is over its bound (flow.py) its socket is not read and finished runs hold their results;
a page stalled that way for flow.STALL_TIMEOUT is closed 1008.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..host import framing
from ..host.background import Subscription
from ..host.events import Event, Exited
from ..host.instance import Instance
from ..host.modules import WasmLoadError
from ..host.service_host import SpawnOptions
from ..manifest import Manifest, Service
from . import flow
from .flow import Outbox
from .grants import AppCalls, FilePicker, Grants, Launched, Picker
from .link import Input, WorkerLink, error_json
from .mounts import Mounts
from .protocol import (
    HEADER,
    Op,
    PolicyError,
    ProtocolError,
    iter_records,
    json_record,
    output_records,
    read_u32,
    record,
    split_json,
)
from .runs import Admission, Run
from .specs import Refused, check_background, refusal, service_of, spawn_options, split_stdin

if TYPE_CHECKING:
    from ..host.service_host import ServiceHost

log = logging.getLogger("wvwasi.bridge")

_WINDOW_OPS = (Op.SEND, Op.STDIN)
_INPUT_OPS = frozenset((Op.SEND, Op.STDIN, Op.CLOSE_STDIN))
#: Spawns and runs of one page that may be starting (in the host) at once.
STARTS_PER_PAGE = 2
#: File-grant reads and writes of one page in progress at once (a read waits for room in the
#: outbox first, so a page asking for many big files holds at most this many in memory).
FILE_IO_PER_PAGE = 2
#: Seconds the page has to take the bridge's close frame before its connection is cut.
CLOSE_WAIT = 1.0
#: Folder requests of one page that may be pending at once.
PICKS_PER_PAGE = 4
#: `wvwasi.window`/`wvwasi.notify` calls of one page in progress at once (each holds a thread of
#: the bridge's pool while the window's GUI loop takes it).
APP_CALLS_PER_PAGE = 4
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
        file_picker: FilePicker | None = None,
        launched: Launched | None = None,
        app_calls: AppCalls | None = None,
        picker_pool: Executor | None = None,
        mounts: Callable[[Grants], Mounts] | None = None,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self._ws = ws
        self._transport = transport  # the connection's, aborted when the page stalls
        self._manifest = manifest
        self._host = host
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._outbox = Outbox(self._loop, self._stalled)
        self._grants = Grants(picker, picker_pool or pool, file_picker, launched, pool)
        self._app_calls = app_calls
        self._mounts = mounts(self._grants) if mounts is not None else None
        self._links: dict[int, WorkerLink] = {}
        self._admission = Admission(manifest.limits.instances_per_page,
                                    lambda: len(self._links), self._launch)
        self._tasks: set[asyncio.Task[None]] = set()
        self._starts = asyncio.Semaphore(STARTS_PER_PAGE)
        self._file_io_slots = asyncio.Semaphore(FILE_IO_PER_PAGE)
        self._picks = 0
        self._app_calls_open = 0
        self._last_id = 0  # ids of SPAWN/RUN/PICK/MOUNT increase along the connection

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

    def _stalled(self) -> None:
        """The page has left its outbox over the bound for STALL_TIMEOUT: close it 1008."""
        log.warning("closing a page connection: it has not read its output for %g s",
                    flow.STALL_TIMEOUT)
        self.shutdown()
        self._task(self._close(PolicyError.close_code, (
            f"the page did not read its output for {flow.STALL_TIMEOUT:g} s".encode())))

    async def _close(self, code: int, message: bytes) -> None:
        """Close the connection; a page that does not take the close frame within CLOSE_WAIT
        (it does not read its socket) is cut off, its unread output dropped."""
        try:
            await asyncio.wait_for(self._ws.close(code=code, message=message), CLOSE_WAIT)
        except (asyncio.TimeoutError, ConnectionError):
            if self._transport is not None:
                self._transport.abort()

    # -- input ----------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Handle the page's frames until the connection closes, then clean up."""
        pump = asyncio.create_task(self._outbox.pump(self._ws))
        try:
            async for msg in self._ws:
                if msg.type != WSMsgType.BINARY:
                    await self._close(WSCloseCode.UNSUPPORTED_DATA, b"binary frames only")
                    break
                try:
                    await self._frame(msg.data)
                    await self._outbox.room()  # the page's next frame waits for its outbox
                except ProtocolError as e:
                    log.warning("closing a page connection: %s", e)
                    self.shutdown()
                    await self._close(e.close_code, str(e).encode()[:120])
                    break
                except Exception:  # a bug in the bridge: this page only, never the server
                    log.exception("closing a page connection after an internal error")
                    self.shutdown()
                    await self._close(WSCloseCode.INTERNAL_ERROR, b"internal error")
                    break
        except ConnectionError:
            pass  # the page went away mid-frame
        finally:
            pump.cancel()
            self.shutdown()

    async def _frame(self, frame: bytes) -> None:
        touched: dict[int, WorkerLink] = {}  # workers with input from this frame
        try:
            await self._records(frame, touched)
        finally:
            for link in touched.values():
                link.flush()

    async def _records(self, frame: bytes, touched: dict[int, WorkerLink]) -> None:
        queued: dict[int, list[Input]] = {}  # input records not yet handed to their workers
        for op, ident, payload in iter_records(frame):
            if op in _INPUT_OPS:
                self._input(op, ident, payload, touched, queued)
                continue
            if queued:  # every record after them sees them handed over, as if one by one
                self._hand_over(queued, touched)
            if op in (Op.SPAWN, Op.RUN):
                self._new_id(ident)
                spec, rest = split_json(payload)
                await self._start(ident, spec, rest, run=op is Op.RUN)
            elif op is Op.TERMINATE:
                self._terminate(ident)
            elif op is Op.CREDIT:
                link = self._links.get(ident)
                credit = read_u32(payload)
                if link is not None:
                    link.credit(credit)
            elif op is Op.PICK:
                self._new_id(ident)
                spec, _ = split_json(payload)
                self._pick(ident, spec)
            elif op is Op.MOUNT:
                self._new_id(ident)
                spec, _ = split_json(payload)
                await self._mount(ident, spec)
            elif op is Op.FS_CALL:
                self._fs_call(ident, payload.tobytes())
            elif op is Op.APP:
                self._new_id(ident)
                spec, _ = split_json(payload)
                if self._app_calls_open >= APP_CALLS_PER_PAGE:
                    self.error(ident, Refused("limit", f"this page already has "
                                              f"{APP_CALLS_PER_PAGE} wvwasi.window or "
                                              "wvwasi.notify calls in progress"))
                else:
                    self._app_calls_open += 1
                    self._task(self._app_call(ident, spec))
            elif op in (Op.READ, Op.WRITE):
                self._new_id(ident)
                spec, rest = split_json(payload)
                self._task(self._file_io(op, ident, spec.get("grant"), bytes(rest)))
            else:
                raise ProtocolError(f"{op.name} records travel from the bridge to the page")
        if queued:
            self._hand_over(queued, touched)

    @staticmethod
    def _hand_over(queued: dict[int, list[Input]], touched: dict[int, WorkerLink]) -> None:
        for ident, items in queued.items():
            touched[ident].enqueue(items)
        queued.clear()

    def _new_id(self, ident: int) -> None:
        """A SPAWN/RUN/PICK/MOUNT id: never 0, never one used before on this connection."""
        if ident <= self._last_id:
            raise ProtocolError(
                f"id {ident} is not new: SPAWN, RUN, PICK and MOUNT ids increase along a "
                "connection, from 1"
            )
        self._last_id = ident

    def _task(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _input(
        self, op: Op, ident: int, payload: memoryview,
        touched: dict[int, WorkerLink], queued: dict[int, list[Input]],
    ) -> None:
        """Check one input record and queue it for its worker (handed over in one piece with
        the frame's next records for that worker, flushed at the end of the frame)."""
        link = self._links.get(ident)
        if link is None:
            return  # the worker has ended; its EXIT record is on its way to the page
        data: bytes | str
        if op is not Op.SEND:
            if link.background:
                raise ProtocolError("a background service's stdin is shared: use SEND")
            data = payload.tobytes()
        elif link.background:  # a message: the shared instance's own send() frames it
            lines = link.service.ipc == "lines"
            data = _line(payload)[:-1].decode() if lines else payload.tobytes()
        else:
            data = _stdin_bytes(link.service.ipc, payload)
        touched[ident] = link
        cost = len(payload) + HEADER.size if op in _WINDOW_OPS else 0
        items = queued.get(ident)
        if items is None:
            queued[ident] = [(op, data, cost)]
        else:
            items.append((op, data, cost))

    def _terminate(self, ident: int) -> None:
        if self._mounts is not None and self._mounts.owns(ident):
            self._mounts.unmount(ident)
            return
        link = self._links.get(ident)
        if link is not None:
            link.terminate()
        if self._admission.terminate(ident):
            self.error(ident, Refused("terminated", "the task was terminated by the page "
                                      "before it started"))

    # -- spawn, run, pick -----------------------------------------------------------------------

    def _request(
        self, spec: dict[str, Any], blob: memoryview, *, run: bool
    ) -> tuple[Service, SpawnOptions, bytes]:
        """Check a SPAWN/RUN record: (service, options, stdin). Refused goes back to the page;
        ProtocolError closes the connection."""
        stdin = b""
        if run:
            stdin, blob = split_stdin(spec, blob)
        options = spawn_options(spec, blob, self._grants.preopen)
        service = service_of(self._manifest, spec)
        check_background(service, options, run=run)
        return service, options, stdin

    async def _start(
        self, ident: int, spec: dict[str, Any], blob: memoryview, *, run: bool
    ) -> None:
        """A SPAWN starts once one of the page's start slots is free (its later records wait
        meanwhile); a RUN starts now or waits in the run queue."""
        try:
            service, options, stdin = self._request(spec, blob, run=run)
        except Refused as e:
            self.error(ident, e)
            return
        if run:
            try:
                self._admission.submit(Run(ident, service, options, stdin))
            except Refused as e:
                self.error(ident, e)
            return
        if self._admission.full():
            self.error(ident, self._admission.refusal())
            return
        await self._starts.acquire()
        if self._closed or self._admission.full():  # queued runs may have taken the slot
            self._starts.release()
            if not self._closed:
                self.error(ident, self._admission.refusal())
            return
        link = self._links[ident] = WorkerLink(self, ident, service)
        self._task(self._spawn(link, options))

    def _launch(self, entry: Run) -> None:
        self._task(self._run(entry))

    def _in_pool(self, start: Callable[[], Instance | Subscription]) -> Any:
        """Run `start` on the shared pool, unless the page has gone; if the page goes while it
        starts, the new instance is stopped at once (also when the bridge's loop has stopped)."""
        def job() -> Instance | Subscription:
            if self._closed:
                raise _PageGone
            handle = start()
            if self._closed:
                _stop(handle, "stopped because its page closed")
            return handle

        return self._loop.run_in_executor(self._pool, job)

    async def _spawn(self, link: WorkerLink, options: SpawnOptions) -> None:
        name = link.service.name
        try:
            handle: Instance | Subscription
            if link.background:
                handle = await self._in_pool(lambda: self._host.subscribe(name, link.on_event))
            else:
                handle = await self._in_pool(
                    lambda: self._host.spawn(name, options, on_event=link.on_event,
                                             output_loop=self._loop,
                                             on_messages=link.on_messages)
                )
        except _PageGone:
            return
        except _SPAWN_ERRORS as e:
            self._links.pop(link.id, None)
            self.error(link.id, refusal(e))
            self._admission.dequeue()
            return
        finally:
            self._starts.release()
        link.attach(handle)
        if self._closed:
            link.close()

    async def _run(self, entry: Run) -> None:
        ident, service = entry.id, entry.service
        done: asyncio.Future[Exited] = self._loop.create_future()

        def on_event(event: Event) -> None:
            if isinstance(event, Exited):
                self._loop.call_soon_threadsafe(_resolve, done, event)

        def start() -> Instance:
            if entry.cancelled:
                raise Refused("terminated", f"the task '{service.name}' was terminated by the "
                              "page before it started")
            inst = self._host.spawn(service.name, entry.options, on_event=on_event,
                                    capture=True)
            entry.started(inst)
            return inst

        try:
            async with self._starts:
                try:
                    inst = await self._in_pool(start)
                except _PageGone:
                    return
                except (Refused, *_SPAWN_ERRORS) as e:
                    self.error(ident, refusal(e))
                    return
            if self._closed:
                inst.terminate("stopped because its page closed")
            try:
                if entry.stdin:
                    inst.write_stdin(entry.stdin)
                inst.close_stdin()
            except BrokenPipeError:
                pass  # it ended before reading its input
            exited = await done
            # the result stays here, in its slot, until there is room for each part
            await self._post_outputs(ident, exited.outputs)
            await self._outbox.room()
            head = {"exitCode": exited.code, "stdoutLength": len(inst.stdout),
                    "error": error_json(exited)}
            self.post(json_record(Op.RESULT, ident, head, inst.stdout, inst.stderr))
        finally:
            self._admission.finished(entry)

    def _pick(self, ident: int, spec: dict[str, Any]) -> None:
        if self._picks >= PICKS_PER_PAGE:
            self.error(ident, Refused("unavailable", (
                f"this page already has {PICKS_PER_PAGE} folder requests open"
            )))
            return
        self._picks += 1
        self._task(self._picked(ident, spec))

    async def _picked(self, ident: int, spec: dict[str, Any]) -> None:
        try:
            grant = await self._grants.pick(spec)
        except Refused as e:
            self.error(ident, e)
            return
        finally:
            self._picks -= 1
        self.post(json_record(Op.GRANT, ident, grant))

    async def _app_call(self, ident: int, spec: dict[str, Any]) -> None:
        """One `wvwasi.window` or `wvwasi.notify` call, run on the pool (answered by DATA with
        JSON, or ERROR)."""
        call, args = spec.get("call"), spec.get("args", [])
        try:
            if self._app_calls is None:
                raise Refused("unavailable", "wvwasi.window and wvwasi.notify need the app "
                              "window, and this page is not shown in one (wvwasi serve has none)")
            if not (isinstance(call, str) and isinstance(args, list)):
                raise Refused("invalid", "expected {call, args: [...]}")
            calls = self._app_calls
            result = await asyncio.get_running_loop().run_in_executor(
                self._pool, lambda: calls(call, args))
        except Refused as e:
            self.error(ident, e)
            return
        except Exception as e:  # the window is closing, or the backend failed
            log.exception("a wvwasi.window call failed")
            self.error(ident, Refused("unavailable", f"the window call failed: {e}"))
            return
        finally:
            self._app_calls_open -= 1
        if not self._closed:
            self.post(record(Op.DATA, ident, json.dumps(result).encode()))

    async def _file_io(self, op: Op, ident: int, grant: Any, data: bytes) -> None:
        """Read or replace a file grant's file (answered by DATA or ERROR)."""
        try:
            async with self._file_io_slots:
                if op is Op.READ:
                    await self._outbox.room()
                    data = await self._grants.read(grant)
                else:
                    await self._grants.write(grant, data)
                    data = b""
        except Refused as e:
            self.error(ident, e)
            return
        if not self._closed:
            self.post(record(Op.DATA, ident, data))

    async def _mount(self, ident: int, spec: dict[str, Any]) -> None:
        """Lend a host folder to a page-supplied module (answered by MOUNTED or ERROR)."""
        if self._mounts is None:
            self.error(ident, Refused("unavailable", "this bridge lends no host folders"))
            return
        try:
            mounted = await self._mounts.mount(ident, spec)
        except Refused as e:
            self.error(ident, e)
            return
        if self._closed:
            self._mounts.unmount(ident)
            return
        self.post(json_record(Op.MOUNTED, ident, mounted))

    def _fs_call(self, ident: int, body: bytes) -> None:
        """Answer one file call of a page-supplied module on a lent folder (FS_REPLY)."""
        mounts = self._mounts
        folder = mounts.begin(ident, body) if mounts is not None else None
        if mounts is None or folder is None:
            return  # the mount has ended (or never was): dropped, like records of ended workers

        async def answer() -> None:
            reply = await mounts.answer(ident, folder, body)
            if not self._closed:
                self.post(record(Op.FS_REPLY, ident, reply))

        self._task(answer())

    # -- teardown -------------------------------------------------------------------------------

    async def _post_outputs(self, ident: int, outputs: tuple[tuple[str, bytes], ...]) -> None:
        """The OUTPUT records of `ident`'s output files, each posted once the outbox is within
        its bound (flow.py): a page that does not read leaves them here, in the worker's slot."""
        for rec in output_records(ident, outputs):
            await self._outbox.room()
            self.post(rec)

    def finish(self, link: WorkerLink, outputs: tuple[tuple[str, bytes], ...],
               last: bytes) -> None:
        """A worker has ended (thread-safe): post its output files as the outbox takes them,
        then `last` (its EXIT), then free its slot."""
        if not outputs:
            self.post(last)
            self.forget(link)
            return

        async def deliver() -> None:
            await self._post_outputs(link.id, outputs)
            self.post(last)
            self.forget(link)

        self._outbox.call_soon(lambda: self._task(deliver()))

    def forget(self, link: WorkerLink) -> None:
        """Drop an ended worker (thread-safe)."""
        def drop() -> None:
            if self._links.get(link.id) is link:
                del self._links[link.id]
                self._admission.dequeue()

        if not self._closed:
            self._outbox.call_soon(drop)

    def shutdown(self) -> None:
        """The page is gone: end its workers and runs, forget its grants (idempotent)."""
        self._outbox.close()
        for link in list(self._links.values()):
            link.close()
        self._admission.stop("stopped because its page closed")
        self._links.clear()
        self._grants.clear()
        if self._mounts is not None:
            self._mounts.clear()

    async def close(self) -> None:
        """Close the connection from the bridge's side."""
        await self._close(WSCloseCode.GOING_AWAY, b"the app is closing")
        self.shutdown()


class _PageGone(Exception):
    """A start skipped because its page has gone."""


def _stop(handle: Instance | Subscription, reason: str) -> None:
    if isinstance(handle, Subscription):
        handle.close()
    else:
        handle.terminate(reason)


def _resolve(future: asyncio.Future[Exited], event: Exited) -> None:
    if not future.done():
        future.set_result(event)


def _line(payload: memoryview) -> bytes:
    """A `lines` message from the page as UTF-8 followed by its newline (one copy)."""
    line = b"".join((payload, b"\n"))
    if not line.isascii():
        try:
            line.decode()
        except UnicodeDecodeError:
            raise ProtocolError("a lines message must be UTF-8") from None
    if line.find(b"\n") != len(line) - 1:
        raise ProtocolError("a lines message cannot contain a newline")
    return line


def _stdin_bytes(ipc: framing.Ipc, payload: memoryview) -> bytes:
    """A page message as its dedicated instance's stdin reads it, framed by its `ipc` mode
    (`lines` checked here: the page's bytes are UTF-8 already)."""
    return _line(payload) if ipc == "lines" else framing.encode(ipc, payload)

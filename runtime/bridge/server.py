"""The loopback bridge: one aiohttp server on 127.0.0.1 for the UI files and the worker socket.

`Bridge.start()` runs the server's asyncio loop on a background thread and returns the launch URL
(it carries the per-launch secret: give it only to the window). See docs/architecture.md
("Bridge") for the API and the protocol, docs/page-api.md for what pages see.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ..host.hostdirs import HostDirs
from .auth import LAUNCH_PATH, WINDOW, WS_PATH, Gate
from .conns import Connections
from .grants import AppCalls, FilePicker, Grants, Launched, Picker, WindowCalls
from .hostfs import HandleBudget, HostFolder
from .memory import return_large_buffers
from .mounts import Mounts
from .protocol import MAX_FRAME, page_constants
from .session import Session
from .static import JS_DIR, SCRIPT_PATH, TYPES_PATH, UIFiles, page_script, security_headers
from .updates import UpdaterFactory, UpdateRoutes

if TYPE_CHECKING:
    from ..host.service_host import ServiceHost
    from ..manifest import Manifest

log = logging.getLogger("wvwasi.bridge")

_JS_TYPE = "text/javascript; charset=utf-8"
#: What pages may load from /__wvwasi/ besides wvwasi.js: the browser engine that runs
#: page-supplied modules in the page's Workers (never natively).
ENGINE_FILES = frozenset(("wasi-page.js", "wasi-web.js", "wasi-engine.js", "wasi-worker.js",
                          "wasi-core.js", "wasi-hostfs.js", "wasi-wire.js"))
#: Threads that start instances for all pages.
POOL_SIZE = 16
#: Page connections open at once; more handshakes get 503.
MAX_PAGES = 64
#: Threads that answer page-supplied modules' host folder calls (FS_CALL), for all pages.
FS_THREADS = 4
#: Open files and folders of all pages' lent host folders together.
FS_HANDLES = 512


class Bridge:
    """Serves one app's UI and connects its pages to the service host."""

    def __init__(
        self,
        manifest: Manifest,
        host: ServiceHost,
        *,
        picker: Picker | None = None,
        file_picker: FilePicker | None = None,
        launched: Launched | None = None,
        app_calls: WindowCalls | None = None,
        dev: bool = False,
        port: int = 0,
        updater: UpdaterFactory | None = None,
        relaunch: Callable[[], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.host = host
        self.picker = _one_at_a_time(picker) if picker is not None else None
        #: the file dialogs run on the picker's one thread: one dialog at a time either way
        self.file_picker = file_picker
        self.launched = launched
        self.app_calls = app_calls
        self.dev = dev
        self.port = port
        self._files = UIFiles(manifest.ui.dir, manifest.ui.entry)
        self._updates = UpdateRoutes(updater, relaunch)  # wvwasi.updater, wvwasi.app.relaunch
        # Every page's spawns and runs start on this pool (each page holds at most
        # session.STARTS_PER_PAGE of its threads); the folder picker has its own thread.
        self._pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="wvwasi:bridge")
        self._picker_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wvwasi:picker")
        self._fs_pool = ThreadPoolExecutor(max_workers=FS_THREADS, thread_name_prefix="wvwasi:fs")
        self._folders: set[HostFolder] = set()  # every page's lent host folders
        self._fs_budget = HandleBudget(FS_HANDLES)
        self._dirs = HostDirs(manifest, host.paths)
        self._sessions: set[Session] = set()
        self._pages = 0  # page connections open or being opened
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._conns = Connections()
        self._gate: Gate | None = None

    # -- the API for the app, `wvwasi serve` and `wvwasi dev` -----------------------------------

    def start(self) -> str:
        """Bind 127.0.0.1:port (random when 0), serve on a background thread; returns the page
        URL with the launch secret. OSError when the port cannot be bound."""
        if self._thread is not None:
            raise RuntimeError("the bridge is already started")
        return_large_buffers()  # pages' large outputs go back to the system when freed
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:
                failure.append(e)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="wvwasi:bridge", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        assert self._gate is not None
        return self._gate.launch_url()

    def launch_url(self) -> str:
        """Another launch URL for a new window or browser (each works once)."""
        if self._gate is None:
            raise RuntimeError("the bridge is not started")
        return self._gate.launch_url()

    def window_url(self, window: str, page: str) -> str:
        """The launch URL of second window `window` (a name like `w1`) on `page`, a path of an
        HTML page in the app's UI folder; it gets its own session (auth.py). ValueError naming
        the cause when `page` is anything else."""
        if self._gate is None:
            raise RuntimeError("the bridge is not started")
        return self._gate.launch_url(window, self._files.page(page))

    def forget_window(self, window: str) -> None:
        """Refuse second window `window`'s requests from now on (it closed)."""
        if self._gate is not None:
            self._gate.forget(window)

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT` once started."""
        if self._gate is None:
            raise RuntimeError("the bridge is not started")
        return self._gate.origin

    def reload(self) -> None:
        """Tell every connected page to reload (`wvwasi dev` after a UI change)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._reload_all)

    def close(self) -> None:
        """Refuse everything, close every page connection (ending their workers), stop."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if self._gate is not None:
            self._gate.revoke()
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._picker_pool.shutdown(wait=False, cancel_futures=True)
        self._fs_pool.shutdown(wait=False, cancel_futures=True)
        self._thread = None

    def __enter__(self) -> Bridge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the server -----------------------------------------------------------------------------

    async def _serve(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if sys.platform == "win32":  # SO_REUSEADDR there would let another process share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:  # rebinding a port in TIME_WAIT, never a port in use
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.port))
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"cannot listen on 127.0.0.1:{self.port}: {e.strerror}") from e
        self._gate = Gate(sock.getsockname()[1])
        self._headers = security_headers(self._gate.origin)
        self._script = self._page_script()
        app = web.Application(middlewares=[self._guard], client_max_size=1 << 20)
        app.on_response_prepare.append(self._add_headers)
        app.router.add_get(LAUNCH_PATH, self._launch)
        app.router.add_get(WS_PATH, self._socket)
        app.router.add_get(SCRIPT_PATH, self._page_api)
        app.router.add_get(TYPES_PATH, self._page_types)
        app.router.add_get("/__wvwasi/{name:wasi-[a-z]+\\.js}", self._engine_file)
        self._updates.add_to(app.router)
        app.router.add_get("/__wvwasi/{rest:.*}", self._not_found)
        app.router.add_get("/{path:.*}", self._file)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        assert self._runner.server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._conns.factory(self._runner.server), sock=sock)

    async def _shutdown(self) -> None:
        for session in list(self._sessions):
            try:
                await asyncio.wait_for(session.close(), 2.0)
            except (asyncio.TimeoutError, ConnectionError):
                session.shutdown()
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _reload_all(self) -> None:
        for session in self._sessions:
            session.reload()

    def _page_script(self) -> bytes:
        services = {
            name: {"kind": s.kind, "ipc": s.ipc, "userGrants": s.user_grants,
                   "scratch": s.scratch}
            for name, s in self.manifest.services.items()
        }
        return page_script({"services": services, "dev": self.dev, **page_constants()})

    # -- handlers -------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: web.Handler) -> web.StreamResponse:
        assert self._gate is not None
        reason = self._gate.refusal(request)
        if reason is not None:
            log.warning("refused %s %s: %s", request.method, request.path, reason)
            return web.Response(status=403, text=f"wvwasi: {reason}\n")
        self._conns.trust(request.transport)
        return await handler(request)

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        for key, value in self._headers.items():
            response.headers.setdefault(key, value)

    async def _launch(self, request: web.Request) -> web.StreamResponse:
        assert self._gate is not None
        response = web.Response(status=303)
        response.headers["Location"] = self._gate.admit(response, request[WINDOW])
        return response

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if self._pages >= MAX_PAGES:
            log.warning("refused a page connection: %d are open", MAX_PAGES)
            return web.Response(status=503, text=f"wvwasi: {MAX_PAGES} pages are connected\n")
        self._pages += 1  # counted before the handshake's await, so concurrent ones count too
        try:
            ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, compress=False)
            await ws.prepare(request)
            session = Session(ws, manifest=self.manifest, host=self.host, picker=self.picker,
                              pool=self._pool, picker_pool=self._picker_pool,
                              mounts=self._page_mounts, transport=request.transport,
                              file_picker=self.file_picker, launched=self.launched,
                              app_calls=self._window_calls(request[WINDOW]))
            self._sessions.add(session)
            try:
                await session.serve()
            finally:
                self._sessions.discard(session)
        finally:
            self._pages -= 1
        return ws

    def _window_calls(self, window: str) -> AppCalls | None:
        """`wvwasi.window` calls of a page in `window` (they act on that window)."""
        calls = self.app_calls
        if calls is None:
            return None
        return lambda call, args: calls(window, call, args)

    def _page_mounts(self, grants: Grants) -> Mounts:
        return Mounts(self.manifest, self._dirs, grants, self._folders, self._fs_budget,
                      self._fs_pool)

    async def _page_api(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._script, headers={"Content-Type": _JS_TYPE})

    async def _page_types(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(JS_DIR / "wvwasi.d.ts",
                                headers={"Content-Type": "text/plain; charset=utf-8"})

    async def _engine_file(self, request: web.Request) -> web.StreamResponse:
        """The browser engine's modules, for page-supplied modules (runtime/js/wasi-page.js)."""
        name = request.match_info["name"]
        if name not in ENGINE_FILES:
            return await self._not_found(request)
        return web.FileResponse(JS_DIR / name, headers={"Content-Type": _JS_TYPE})

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text=f"not found: {request.path}")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        return await self._files.respond(request, request.match_info["path"])


def _one_at_a_time(picker: Picker) -> Picker:
    """`picker`, never shown twice at once (pages may ask concurrently; there is one window)."""
    lock = threading.Lock()

    def pick() -> Path | str | None:
        with lock:
            return picker()

    return pick

"""The page's `wvwasi.updater` and `wvwasi.app.relaunch()`: POST routes under ACTION_PREFIX,
which auth.py lets through only with the page's Origin, cookie and socket key.

- `update-check` -> `{"update": {version, notes, date} | null}` or `{"error": "..."}`
- `update-install` -> newline-delimited JSON: `{"progress": [bytes, total | null]}` (at most one
  in flight: a slow page gets the latest figure, not a queue), then `{"installed": version}`,
  `{"update": null}` (already newest) or `{"error": "..."}`
- `relaunch` -> `{}`, then the app starts again (its new version) and this one closes.
One check or install runs at a time per app; another gets `{"error": "... already running"}`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from .auth import ACTION_PREFIX

if TYPE_CHECKING:
    from wvwasi.runtime.update.updater import Updater

UpdaterFactory = Callable[[], "Updater"]


class UpdateRoutes:
    """The handlers; `updater()` makes the app's Updater (UpdateError when it has none)."""

    def __init__(self, updater: UpdaterFactory | None, relaunch: Callable[[], None] | None):
        self._updater = updater
        self._relaunch = relaunch
        self._busy = threading.Lock()

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post(ACTION_PREFIX + "update-check", self.check)
        router.add_post(ACTION_PREFIX + "update-install", self.install)
        router.add_post(ACTION_PREFIX + "relaunch", self.relaunch)

    def _make(self) -> Updater:
        from wvwasi.runtime.update.updater import UpdateError

        if self._updater is None:
            raise UpdateError("updates work in a built app only (wvwasi build)")
        return self._updater()

    async def check(self, request: web.Request) -> web.Response:
        from wvwasi.runtime.update.updater import UpdateError

        def work() -> dict:
            release = self._make().check()
            return {"update": release.to_json() if release else None}

        try:
            return web.json_response(await self._exclusive(work))
        except UpdateError as e:
            return web.json_response({"error": str(e)})

    async def install(self, request: web.Request) -> web.StreamResponse:
        from wvwasi.runtime.update.updater import UpdateError

        loop = asyncio.get_running_loop()
        latest: list[tuple[int, int | None]] = []
        ready = asyncio.Event()

        def progress(done: int, total: int | None) -> None:  # on the install thread
            def note() -> None:
                latest[:] = [(done, total)]
                ready.set()
            loop.call_soon_threadsafe(note)

        def work() -> dict:
            updater = self._make()
            release = updater.check()
            if release is None:
                return {"update": None}
            updater.install(release, progress)
            return {"installed": release.version}

        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        task = asyncio.ensure_future(self._exclusive(work))
        while not task.done():
            waiter = asyncio.ensure_future(ready.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if latest:
                ready.clear()
                await response.write(json.dumps({"progress": list(latest.pop())}).encode()
                                     + b"\n")
        try:
            result = task.result()
        except UpdateError as e:
            result = {"error": str(e)}
        await response.write(json.dumps(result).encode() + b"\n")
        await response.write_eof()
        return response

    async def relaunch(self, request: web.Request) -> web.Response:
        if self._relaunch is None:
            return web.json_response({"error": "this app cannot relaunch itself (not a built "
                                      "app with a window)"})
        asyncio.get_running_loop().call_later(0.05, self._relaunch)  # after the answer
        return web.json_response({})

    async def _exclusive(self, work: Callable[[], dict]) -> dict:
        from wvwasi.runtime.update.updater import UpdateError

        if not self._busy.acquire(blocking=False):
            raise UpdateError("an update check or install is already running")
        try:
            return await asyncio.get_running_loop().run_in_executor(None, work)
        finally:
            self._busy.release()

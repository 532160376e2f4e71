"""The app entry: manifest -> service host -> bridge -> window, and a clean shutdown.

`run_app()` is what a built app (runtime/frozen_main.py), `wvwasi run` and
`python -m wvwasi.runtime` call; `wvwasi dev` uses `App` directly to reach the host and bridge.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from wvwasi.runtime import single_instance
from wvwasi.runtime.launch import Launch, OpenedFile, classify
from wvwasi.runtime.manifest import Manifest, ManifestError, load_manifest, parse_menu
from wvwasi.runtime.notify import Notifier, NotifyError
from wvwasi.runtime.paths import PathContext
from wvwasi.runtime.selftest import SelfTest, headless_checks
from wvwasi.runtime.stopping import INTERRUPTED, stop_at_end_of_stdin, stop_on_signals, wait
from wvwasi.runtime.window import AppWindow, Backend, backend_for

if TYPE_CHECKING:
    from wvwasi.runtime.bridge.server import Bridge
    from wvwasi.runtime.host.service_host import ServiceHost
    from wvwasi.runtime.update.updater import Updater

#: Folder of precompiled service artefacts in a built app's payload (packager/stage.py).
PRECOMPILED = "precompiled"
#: How long shutdown waits for the app's threads to end.
_THREAD_GRACE = 2.0
#: Page events (`open`, `menu`, `tray`) waiting for a page to load; older ones are dropped
#: past this.
MAX_PENDING_EVENTS = 64
#: Bounds on `wvwasi.window` calls: title characters, width and height in pixels.
MAX_TITLE = 1024
MAX_WINDOW_SIZE = 16384
#: Launched documents whose tokens the page may still exchange for file grants.
MAX_LAUNCHED = 256
#: Second windows (`wvwasi.window.open`) open at once.
MAX_WINDOWS = 8
log = logging.getLogger("wvwasi.app")


class App:
    """One running app: owns its path context, service host, bridge and window."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        resources: Path | None = None,
        backend: Backend | None = None,
        dev: bool = False,
        headless: bool = False,
        compile_cache: Path | None = None,
        launch: Launch | None = None,
        primary: single_instance.Primary | None = None,
        port: int = 0,
    ) -> None:
        # Imported here, not above: a later launch that only hands its arguments to the running
        # instance (run_app) never loads the bridge (aiohttp) or the host (wasmtime).
        from wvwasi.runtime.bridge.server import Bridge
        from wvwasi.runtime.host.service_host import ServiceHost

        self.manifest = manifest
        #: the single-instance listener (forwarded launches), if this is the first instance
        self.primary = primary
        self._events = PageEvents()
        self._launched: dict[str, OpenedFile] = {}  # by token: launched documents to grant
        self._launched_lock = threading.Lock()
        if launch is not None:
            self._events.add("open", self._open_detail(launch))
        self.paths = PathContext.for_app(manifest, resources=resources)
        precompiled = manifest.root / PRECOMPILED
        self.host: ServiceHost = ServiceHost(
            manifest, paths=self.paths,
            precompiled_dir=precompiled if precompiled.is_dir() else None,
            compile_cache=compile_cache,
        )
        #: None when headless (services and bridge only: no display needed)
        self.window = None if headless else AppWindow(
            manifest.window, backend or backend_for(manifest), inspector=dev,
            on_menu=lambda ident: self.send_event("menu", {"id": ident}), on_open=self.opened,
            app=manifest.app, on_tray=lambda ident: self.send_event("tray", {"id": ident}),
        )
        picker = self.window.pick_folder if self.window is not None else None
        file_picker = self.window.pick_files if self.window is not None else None
        frozen = bool(getattr(sys, "frozen", False))  # a built app: it may update itself
        self.bridge: Bridge = Bridge(
            manifest, self.host, picker=picker, dev=dev, file_picker=file_picker,
            launched=self.launched_file, app_calls=self.window_call if self.window else None,
            updater=self._updater if frozen and manifest.update is not None else None,
            relaunch=self._relaunch if frozen and self.window is not None else None,
            port=port,
        )
        self._at_close: list[Callable[[], None]] = []
        self._closed = False
        self._opened = 0  # second windows opened so far (their names: w1, w2, ...)
        self._opening = threading.Lock()
        self._notifier = Notifier(manifest.app.name, manifest.app.icon)

    def _updater(self) -> Updater:
        from wvwasi.runtime.update.updater import Updater

        return Updater(self.manifest, Path(sys.executable).resolve())

    def _relaunch(self) -> None:
        """`wvwasi.app.relaunch()`: start the app again (its installed version), close this one.
        After a Windows update the setup waiting for this exit starts the new version."""
        from wvwasi.runtime.update.install import request_relaunch

        if not request_relaunch():
            command = os.environ.get("WVWASI_ONEFILE") or sys.executable  # onefile: launcher
            relaunch([command], self.primary)
        if self.window is not None:
            self.window.close()

    def at_close(self, callback: Callable[[], None]) -> None:
        """Call `callback` first thing when the app shuts down (e.g. stop a file watcher)."""
        self._at_close.append(callback)

    def run(
        self,
        *,
        self_test: bool = False,
        on_started: Callable[[App], None] | None = None,
    ) -> int:
        """Start everything, show the window until it closes, shut down; the exit status.

        `on_started(app)` runs once the bridge is up, before the window opens (the GUI loop
        then holds the main thread). With `self_test`, prints the JSON report and returns 0
        only if every check passed.
        """
        started = time.perf_counter()
        if self.window is None:
            return self._headless_self_test(started)
        test = SelfTest(self.manifest, self.window, started) if self_test else None
        try:
            self.host.start()
            url = self.bridge.start()
            if self.primary is not None:
                self.primary.serve(self.forwarded)
            if on_started is not None:
                on_started(self)
            if test is not None:
                test.start()
            self.window.run(url, on_loaded=self._page_loaded)
        finally:
            self.close()
        if test is None:
            return 0
        report = test.finish(_leftover_threads())
        print(json.dumps(report), flush=True)
        return 0 if report["ok"] else 1

    def serve(self, *, hint: str = "", stdin_stops: bool = True,
              stop: threading.Event | None = None) -> int:
        """Services and bridge without a window (the app's `--serve`, `wvwasi serve`): print the
        launch URL (then `hint`) on stdout, serve until SIGINT/SIGTERM or, with `stdin_stops`
        and stdin a pipe, its end (stopping.stop_at_end_of_stdin); then `Stopped.` and 0.
        `stop`: the Event of the caller's `stop_on_signals()` (entered before the App was made,
        so a Ctrl+C while it was made counts), else it enters its own. A stop before the URL is
        printed shuts down without printing it: INTERRUPTED. OSError when the bridge's port
        cannot be bound."""
        with contextlib.ExitStack() as stack:
            if stop is None:
                stop = stack.enter_context(stop_on_signals())
            try:
                if stop.is_set():
                    return INTERRUPTED
                self.host.start()
                url = self.bridge.start()
                if stop.is_set():  # stopped while they started
                    return INTERRUPTED
                print(f"Serving {self.manifest.app.name} at {url}", flush=True)
                if hint:
                    print(hint, flush=True)
                if stdin_stops:
                    stop_at_end_of_stdin(stop)
                wait(stop)
            finally:
                self.close()
        print("Stopped.", flush=True)
        return 0

    def _headless_self_test(self, started: float) -> int:
        """The self-test without a window (selftest.headless_checks): print its report."""
        report: dict = {"app": self.manifest.app.name, "version": self.manifest.app.version,
                        "mode": "headless", "backend": None, "ok": False, "error": None}
        try:
            self.host.start()
            report.update(headless_checks(self.manifest, self.host, self.bridge.start()))
            checks = [*report["services"].values(), report["bridge"]]
            report["ok"] = all(c["ok"] for c in checks)
        except Exception as e:
            report["error"] = f"{type(e).__name__}: {e}"
        finally:
            self.close()
        report["seconds"] = round(time.perf_counter() - started, 3)
        report["threads_left"] = _leftover_threads()
        report["ok"] = report["ok"] and not report["threads_left"]
        print(json.dumps(report), flush=True)
        return 0 if report["ok"] else 1

    def send_event(self, kind: str, detail: dict[str, Any]) -> None:
        """Dispatch `kind` (`open`, `menu`, `tray`) on the page's `wvwasi.app`; held until a page
        has loaded (and, on the page, an `open` until it has a listener)."""
        self._events.add(kind, detail)
        if self.window is not None and self.window.loaded.is_set():
            self._events.flush(self.window)

    def _open_detail(self, launch: Launch) -> dict[str, Any]:
        """`launch`'s `open` event detail; each file gets a token the page exchanges for a
        file grant (bridge/grants.py; at most MAX_LAUNCHED files are remembered)."""
        detail = launch.detail()
        with self._launched_lock:
            for file, entry in zip(launch.files, detail["files"], strict=True):
                token = secrets.token_urlsafe(24)
                self._launched[token] = file
                entry["token"] = token
            while len(self._launched) > MAX_LAUNCHED:
                del self._launched[next(iter(self._launched))]
        return detail

    def launched_file(self, token: str) -> tuple[Path, Literal["ro", "rw"]] | None:
        """The path and mode of the launched document `token` names, if any."""
        with self._launched_lock:
            file = self._launched.get(token)
        return (file.path, file.mode) if file is not None else None

    def window_call(self, name: str, call: str, args: list[Any]) -> Any:
        """One `wvwasi.window` call or `wvwasi.notify` from a page in window `name` (the main one
        or a second); docs/page-api.md. Refused if malformed or not allowed."""
        from wvwasi.runtime.bridge.specs import Refused

        window = self.window
        assert window is not None
        if call == "setTitle" and len(args) == 1 and _title(args[0]):
            window.set_title(args[0], name)
        elif call == "resize" and len(args) == 2 and all(map(_size, args)):
            window.resize(args[0], args[1], name)
        elif call == "setFullscreen" and len(args) == 1 and isinstance(args[0], bool):
            window.set_fullscreen(args[0], name)
        elif call == "close" and not args:
            window.close_window(name)
        elif call == "open" and len(args) == 2 and isinstance(args[0], str) \
                and isinstance(args[1], dict):
            self._open_window(args[0], args[1])
        elif call == "setMenu" and len(args) == 1:
            try:
                menu = parse_menu(args[0])
            except ManifestError as e:
                raise Refused("invalid", str(e)) from e
            try:
                window.set_menu(menu)
            except NotImplementedError as e:
                raise Refused("unavailable", str(e)) from e
        elif call == "notify" and len(args) == 2 and all(isinstance(a, str) for a in args):
            if not self.manifest.app.notifications:
                raise Refused("permission", "wvwasi.notify() needs [app] notifications = true "
                              "in wvwasi.toml")
            try:
                self._notifier.notify(args[0], args[1])
            except NotifyError as e:
                raise Refused(e.kind, str(e)) from e
        else:
            raise Refused("invalid", f"no window call {call}({', '.join(map(repr, args))[:200]})")
        return None

    def _open_window(self, page: str, options: dict[str, Any]) -> None:
        """`wvwasi.window.open(page, options)`: a second window on a page of the app's UI, with
        a bridge session of its own (Refused: a bad option, not a page, too many windows)."""
        from wvwasi.runtime.bridge.specs import Refused

        spec = self.manifest.window
        title = options.get("title", spec.title)
        width, height = options.get("width", spec.width), options.get("height", spec.height)
        unknown = set(options) - {"title", "width", "height"}
        if unknown or not (_title(title) and _size(width) and _size(height)):
            raise Refused("invalid", "wvwasi.window.open(): options are {title: a string of at "
                          f"most {MAX_TITLE} characters, width and height: 1 to "
                          f"{MAX_WINDOW_SIZE}}}" + (f" (unknown: {sorted(unknown)})"
                                                     if unknown else ""))
        window = self.window
        assert window is not None
        with self._opening:
            if len(window.windows()) >= MAX_WINDOWS:
                raise Refused("limit", f"{MAX_WINDOWS} second windows are open: close one first")
            self._opened += 1
            name = f"w{self._opened}"
            try:
                url = self.bridge.window_url(name, page)
            except ValueError as e:
                raise Refused("permission", f"wvwasi.window.open(): {e}") from None
            try:
                window.open_window(name, url, title=title, width=width, height=height,
                                   on_closed=lambda: self.bridge.forget_window(name))
            except BaseException:
                self.bridge.forget_window(name)
                raise

    def _page_loaded(self) -> None:
        if self.window is not None:
            self._events.flush(self.window)

    def forwarded(self, message: dict[str, Any]) -> None:
        """A later launch's command line (single instance): bring the window forward and
        send the page its `open` event."""
        try:
            argv, cwd = message.get("argv"), message.get("cwd")
            if not (isinstance(argv, list) and isinstance(cwd, str)):
                raise ValueError("expected {argv: [...], cwd: '...'}")
            launch = classify(argv, cwd, self.manifest)
        except ValueError as e:
            log.warning("ignored a forwarded launch: %s", e)
            return
        if self.window is not None:
            self.window.bring_forward()
        self.send_event("open", self._open_detail(launch))

    def opened(self, args: list[str]) -> None:
        """Documents and URLs the OS asked the running app to open other than on a command line
        (macOS: Apple events from Finder and Launch Services): handled like a later launch
        from the home folder."""
        self.forwarded({"argv": args, "cwd": str(Path.home())})

    def close(self) -> None:
        """Stop the bridge (ending every page's workers), the host and the run's temp folder."""
        if self._closed:
            return
        self._closed = True
        if self.primary is not None:
            self.primary.close()
        for callback in reversed(self._at_close):
            callback()
        if self.window is not None:
            self.window.close()
        try:
            self.bridge.close()
        finally:
            try:
                self.host.close()
            finally:
                self.paths.close()


def _title(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TITLE


def _size(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_WINDOW_SIZE


class PageEvents:
    """`wvwasi.app` events not yet handed to a loaded page (at most MAX_PENDING_EVENTS)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[str, dict[str, Any]]] = []

    def add(self, kind: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self._pending = [*self._pending, (kind, detail)][-MAX_PENDING_EVENTS:]

    def flush(self, window: AppWindow) -> None:
        """Hand every pending event to the page; those it could not take stay pending."""
        with self._lock:
            pending, self._pending = self._pending, []
        for i, (kind, detail) in enumerate(pending):
            if not window.dispatch(kind, detail):
                with self._lock:
                    self._pending = [*pending[i:], *self._pending][-MAX_PENDING_EVENTS:]
                return


def _leftover_threads() -> list[str]:
    """Names of the app's threads still running after shutdown (waits briefly for them)."""
    deadline = time.monotonic() + _THREAD_GRACE
    current = threading.current_thread()
    while True:
        alive = [
            t for t in threading.enumerate()
            if t is not current and t.is_alive() and t.name != "wvwasi-self-test"
            and (not t.daemon or t.name.startswith("wvwasi"))
        ]
        if not alive or time.monotonic() > deadline:
            return sorted(t.name for t in alive)
        time.sleep(0.05)


def run_app(
    manifest_or_dir: Manifest | Path | str,
    *,
    resources: Path | None = None,
    self_test: bool | str = False,
    backend: Backend | None = None,
    dev: bool = False,
    on_started: Callable[[App], None] | None = None,
    compile_cache: Path | None = None,
    open_args: Sequence[str] = (),
    serve: bool = False,
) -> int:
    """Run the app in `manifest_or_dir` (a Manifest, a wvwasi.toml or its folder).

    `resources` is the shipped `$RESOURCES` folder of a built app (default: the project
    folder); `self_test` True runs the self-test in the window, "headless" without one
    (services and bridge only, for machines without a display); `backend` overrides the
    manifest's Linux webview; `dev` enables the page's reload channel and the web inspector;
    `on_started` see `App.run`; `compile_cache` replaces the app's `$CACHE` as the compile cache
    (the dev tools share wvwasi's); `open_args`: the files and URLs it was launched with (the
    page's first `open` event); `serve`: no window, see `App.serve`. With `[app]
    single_instance` (and none of `self_test`, `dev`, `serve`), a launch while the app already
    runs hands `open_args` to it and returns 0 at once (runtime/single_instance.py). Returns the
    exit status:
    0, 1 for a failed self-test, 2 when the app cannot start (the reason is on stderr, and in
    the JSON report with `self_test`), 130 (INTERRUPTED) when `serve` was stopped before it
    served.
    """
    try:
        manifest = (
            manifest_or_dir if isinstance(manifest_or_dir, Manifest)
            else load_manifest(manifest_or_dir)
        )
        cwd = os.getcwd()
        primary = None
        if manifest.app.single_instance and not (self_test or dev or serve):
            handed_over, primary = _first_instance(manifest, list(open_args), cwd)
            if handed_over:
                return 0
        if serve:
            with stop_on_signals() as stop:  # before the App is made: Ctrl+C at any point
                app = App(manifest, resources=resources, headless=True,
                          compile_cache=compile_cache, launch=classify(list(open_args), cwd,
                                                                       manifest))
                return app.serve(stop=stop)
        app = App(manifest, resources=resources, backend=backend, dev=dev,
                  headless=self_test == "headless", compile_cache=compile_cache,
                  launch=classify(list(open_args), cwd, manifest), primary=primary)
        return app.run(self_test=bool(self_test), on_started=on_started)
    except (ManifestError, ImportError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        if self_test:
            print(json.dumps({"ok": False, "error": str(e)}), flush=True)
        return 2


def relaunch(command: list[str], primary: single_instance.Primary | None) -> None:
    """Start `command` as the app's next instance. The single-instance lock and listener are
    released first: else the new process would find this (exiting) one running and hand its
    launch over to it."""
    import subprocess

    if primary is not None:
        primary.close()
    subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)


def _first_instance(manifest: Manifest, argv: list[str], cwd: str
                    ) -> tuple[bool, single_instance.Primary | None]:
    """(True, None) once `argv` was handed to the running instance, else (False, this launch's
    listener as the first instance). Where that fails (no private per-user folder, a running
    instance that does not answer) the app runs on without one, saying why on stderr."""
    ident = manifest.app.identifier
    for _ in range(2):  # the running instance may exit between our lock test and connect
        try:
            primary = single_instance.acquire(ident)
            if primary is not None:
                return False, primary
            single_instance.forward(ident, {"argv": argv, "cwd": cwd})
            return True, None
        except OSError as e:  # ForwardError included
            problem = e
    print(f"warning: single instance is off: {problem}", file=sys.stderr)
    return False, None

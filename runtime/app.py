"""The app entry: manifest -> service host -> bridge -> window, and a clean shutdown.

`run_app()` is what a built app (runtime/frozen_main.py), `wvwasi run` and
`python -m wvwasi.runtime` call; `wvwasi dev` uses `App` directly to reach the host and bridge.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from wvwasi.runtime.bridge.server import Bridge
from wvwasi.runtime.host.service_host import ServiceHost
from wvwasi.runtime.manifest import Manifest, ManifestError, load_manifest
from wvwasi.runtime.paths import PathContext
from wvwasi.runtime.selftest import SelfTest, headless_checks
from wvwasi.runtime.window import AppWindow, Backend, backend_for

#: Folder of precompiled service artefacts in a built app's payload (packager/stage.py).
PRECOMPILED = "precompiled"
#: How long shutdown waits for the app's threads to end.
_THREAD_GRACE = 2.0


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
    ) -> None:
        self.manifest = manifest
        self.paths = PathContext.for_app(manifest, resources=resources)
        precompiled = manifest.root / PRECOMPILED
        self.host = ServiceHost(
            manifest, paths=self.paths,
            precompiled_dir=precompiled if precompiled.is_dir() else None,
            compile_cache=compile_cache,
        )
        #: None when headless (services and bridge only: no display needed)
        self.window = None if headless else AppWindow(
            manifest.window, backend or backend_for(manifest), inspector=dev
        )
        picker = self.window.pick_folder if self.window is not None else None
        self.bridge = Bridge(manifest, self.host, picker=picker, dev=dev)
        self._at_close: list[Callable[[], None]] = []
        self._closed = False

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
            if on_started is not None:
                on_started(self)
            if test is not None:
                test.start()
            self.window.run(url)
        finally:
            self.close()
        if test is None:
            return 0
        report = test.finish(_leftover_threads())
        print(json.dumps(report), flush=True)
        return 0 if report["ok"] else 1

    def serve(self) -> int:
        """Services and bridge without a window (the app's `--serve`): print the launch URL on
        stdout, serve until SIGINT/SIGTERM or, when stdin is a pipe, its end (the parent that
        started it closed it or exited: how a test or a remote shell stops it on Windows)."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            self.host.start()
            url = self.bridge.start()
            print(f"Serving {self.manifest.app.name} at {url}", flush=True)
            if _is_pipe(sys.stdin):
                threading.Thread(target=_set_at_eof, args=(sys.stdin, stop), daemon=True,
                                 name="serve-stdin").start()
            while not stop.wait(0.5):
                pass
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

    def close(self) -> None:
        """Stop the bridge (ending every page's workers), the host and the run's temp folder."""
        if self._closed:
            return
        self._closed = True
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


def _is_pipe(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _set_at_eof(stream: TextIO, stop: threading.Event) -> None:
    """Set `stop` once `stream` ends (the parent that started `--serve` closed it or exited)."""
    with contextlib.suppress(OSError, ValueError):
        while stream.buffer.read1(65536):
            pass
    stop.set()


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
    serve: bool = False,
) -> int:
    """Run the app in `manifest_or_dir` (a Manifest, a wvwasi.toml or its folder).

    `resources` is the shipped `$RESOURCES` folder of a built app (default: the project
    folder); `self_test` True runs the self-test in the window, "headless" without one
    (services and bridge only, for machines without a display); `backend` overrides the
    manifest's Linux webview; `dev` enables the page's reload channel and the web inspector;
    `on_started` see `App.run`; `compile_cache` replaces the app's `$CACHE` as the compile cache
    (the dev tools share wvwasi's); `serve`: no window, see `App.serve`. Returns the exit status:
    0, 1 for a failed self-test, 2 when the app cannot start (the reason is on stderr, and in
    the JSON report with `self_test`).
    """
    try:
        manifest = (
            manifest_or_dir if isinstance(manifest_or_dir, Manifest)
            else load_manifest(manifest_or_dir)
        )
        app = App(manifest, resources=resources, backend=backend, dev=dev,
                  headless=serve or self_test == "headless", compile_cache=compile_cache)
        if serve:
            return app.serve()
        return app.run(self_test=bool(self_test), on_started=on_started)
    except (ManifestError, ImportError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        if self_test:
            print(json.dumps({"ok": False, "error": str(e)}), flush=True)
        return 2

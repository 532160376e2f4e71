"""`wvwasi dev [DIR]`: `wvwasi run` that watches the project.

A change under the UI folder reloads the page; a change to a file matching a service's
`build.watch` globs runs its `build.command` and restarts the service (its workers get an `exit`
event and may start again). A failed build keeps the running version.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from wvwasi.packager.commands.run import add_common
from wvwasi.packager.services import build_shown, prepare, watched_files

if TYPE_CHECKING:
    from wvwasi.runtime.app import App

#: Milliseconds of quiet before a burst of file changes is handled (an editor's save).
DEBOUNCE_MS = 200


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `dev` subcommand."""
    p = sub.add_parser(
        "dev",
        help="run the app and reload it as you edit",
        description="Like `wvwasi run`, and watch the project: UI edits reload the page, "
        "edits to a service's build.watch files rebuild and restart that service.",
    )
    add_common(p)
    p.set_defaults(run=run)


class DevWatcher:
    """Watches an app's project folders on a thread and applies changes to the running app."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="wvwasi-dev-watch",
                                        daemon=True)

    def roots(self) -> list[Path]:
        """The folders to watch: the project, and any UI or build folder outside it."""
        m = self.app.manifest
        folders = [m.root, m.ui.dir] + [s.build.workdir for s in m.services.values() if s.build]
        roots: list[Path] = []
        for folder in sorted(set(folders), key=lambda p: len(p.parts)):
            if not any(folder.is_relative_to(r) for r in roots):
                roots.append(folder)
        return roots

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        import watchfiles

        for changes in watchfiles.watch(*self.roots(), stop_event=self._stop,
                                        debounce=DEBOUNCE_MS, raise_interrupt=False):
            self.apply(Path(path).resolve() for _, path in changes)

    def apply(self, changed: Iterable[Path]) -> None:
        """Rebuild and restart the services whose watched files changed, then reload the
        page if a UI file changed."""
        changed = set(changed)
        m = self.app.manifest
        if m.path in changed:
            print("wvwasi dev: wvwasi.toml changed: restart `wvwasi dev` to apply it", flush=True)
        for service in m.services.values():
            if not changed & watched_files(service):
                continue
            if build_shown(service):
                self.app.host.restart(service.name)
                print(f"wvwasi dev: services.{service.name} rebuilt and restarted", flush=True)
            else:
                print(f"wvwasi dev: services.{service.name} keeps running its previous build",
                      flush=True)
        if any(p.is_relative_to(m.ui.dir) for p in changed):
            self.app.bridge.reload()
            print("wvwasi dev: UI changed, page reloaded", flush=True)


def run(args: argparse.Namespace) -> int:
    """Build, run and watch until the window closes; 2 if the project cannot start."""
    manifest = prepare(args.dir, "dev")
    if manifest is None:
        return 2

    def watch(app: App) -> None:
        watcher = DevWatcher(app)
        app.at_close(watcher.stop)
        watcher.start()
        print(f"wvwasi dev: watching {', '.join(str(r) for r in watcher.roots())}", flush=True)

    from wvwasi.packager.caches import compiled_dir
    from wvwasi.runtime.app import run_app

    return run_app(manifest, backend=args.webview, dev=True, on_started=watch,
                   compile_cache=compiled_dir())

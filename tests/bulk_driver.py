"""Run a project in the real app window and print what one page expression returned.

Usage: python tests/bulk_driver.py PROJECT BACKEND EXPRESSION [--menu-labels] [--tray]
(DISPLAY set). Runs the app in this process (`App`: host, bridge, pywebview window), waits for the
page to load, awaits EXPRESSION in it (`AppWindow.evaluate`), closes the window and prints one
JSON object: `{"value", "status", "threads_left"}` or `{"error", ...}`; with `--menu-labels` also
`menu_labels`, the labels of the window's menu bar after EXPRESSION; with `--tray` (Qt; a system
tray running) `trays`, the page's `tray` events after a click on the tray icon and on its first
menu item (EXPRESSION must have made the page collect them in `trays`).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from driven_app import run_driven

from wvwasi.runtime.app import App
from wvwasi.runtime.manifest import load_manifest

LOAD_WAIT = 60.0
RUN_WAIT = 240.0


def on_qt(function: Callable[[], Any]) -> Any:
    """`function()`'s value, called on the Qt GUI thread."""
    from wvwasi.runtime.window import qt

    answer: list[Any] = []
    done = threading.Event()

    def call() -> None:
        try:
            answer.append(function())
        finally:
            done.set()

    qt._on_gui(call)
    if not done.wait(LOAD_WAIT):
        raise TimeoutError("the Qt GUI thread did not answer")
    return answer[0]


def qt_menu_labels() -> list[str]:
    """The texts of every entry of the Qt window's menu bar, submenus included."""
    from webview.platforms.qt import BrowserView

    def collect() -> list[str]:
        labels: list[str] = []

        def walk(actions: list[Any]) -> None:
            for action in actions:
                labels.append(action.text())
                if action.menu() is not None:
                    walk(action.menu().actions())

        for view in BrowserView.instances.values():
            walk(view.menuBar().actions())
        return labels

    return on_qt(collect)


def qt_tray_clicks(app: App) -> Any:
    """Click the Qt tray icon once it is in the system tray, then its menu's first item; the
    page's `trays`."""
    tray = app.window.tray
    deadline = time.monotonic() + LOAD_WAIT
    def place() -> Any:
        return tray.status_icon.geometry().getRect() if tray.status_icon is not None else None

    box = previous = None  # where the tray put the icon, once two reads agree (it lays it out)
    while not (box and box[2] > 0 and box == previous):
        if time.monotonic() > deadline:
            raise TimeoutError("the tray icon never appeared in the system tray")
        previous, box = box, on_qt(place)
        time.sleep(0.2)
    x, y, width, height = box
    subprocess.run(["xdotool", "mousemove", str(x + width // 2), str(y + height // 2),
                    "click", "1"], check=True, timeout=30)
    app.window.evaluate("new Promise((ok) => { const t = setInterval(() => trays.length === 1 "
                        "&& (clearInterval(t), ok())); })", LOAD_WAIT)
    on_qt(lambda: tray.menu.actions()[0].trigger())
    return app.window.evaluate("new Promise((ok) => { const t = setInterval(() => trays.length "
                               "=== 2 && (clearInterval(t), ok(trays))); })", LOAD_WAIT)


def drive(app: App, expression: str, result: dict[str, Any]) -> None:
    window = app.window
    try:
        if not window.loaded.wait(LOAD_WAIT):
            raise TimeoutError(f"the page did not load within {LOAD_WAIT:g} s")
        result["value"] = window.evaluate(expression, RUN_WAIT)
        if "--menu-labels" in sys.argv:
            if app.window.backend == "qt":
                result["menu_labels"] = qt_menu_labels()
            else:
                from desktop_driver import menu_labels

                result["menu_labels"] = menu_labels()
        if "--tray" in sys.argv:
            result["trays"] = qt_tray_clicks(app)
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        window.close()


def main() -> int:
    project, backend, expression = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    app = App(load_manifest(project), backend=backend)  # type: ignore[arg-type]
    result: dict[str, Any] = {}
    return run_driven(app, lambda app: drive(app, expression, result), result)


if __name__ == "__main__":
    sys.exit(main())

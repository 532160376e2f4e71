"""Run a project in the real app window and print what one page expression returned.

Usage: python tests/bulk_driver.py PROJECT BACKEND EXPRESSION [--menu-labels] (DISPLAY set).
Runs the app in this process (`App`: host, bridge, pywebview window), waits for the page to load,
awaits EXPRESSION in it (`AppWindow.evaluate`), closes the window and prints one JSON object:
`{"value", "status", "threads_left"}` or `{"error", ...}`; with `--menu-labels` (GTK) also
`menu_labels`, the labels of the window's menu bar after EXPRESSION.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from driven_app import run_driven

from wvwasi.runtime.app import App
from wvwasi.runtime.manifest import load_manifest

LOAD_WAIT = 60.0
RUN_WAIT = 240.0


def drive(app: App, expression: str, result: dict[str, Any]) -> None:
    window = app.window
    try:
        if not window.loaded.wait(LOAD_WAIT):
            raise TimeoutError(f"the page did not load within {LOAD_WAIT:g} s")
        result["value"] = window.evaluate(expression, RUN_WAIT)
        if "--menu-labels" in sys.argv:
            from desktop_driver import menu_labels

            result["menu_labels"] = menu_labels()
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

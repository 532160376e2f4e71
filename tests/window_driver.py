"""Drive the Notes example in a real window like a user would, for tests/test_window.py.

Usage: python tests/window_driver.py PROJECT BACKEND SCREENSHOT.png (DISPLAY must be set).
Runs the app in this process, clicks through the page (write and save a note, read its
statistics, filter the image, crash the filter service, read the log), saves a screenshot, closes
the window and prints one JSON object: what the page showed at each step.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from wvwasi.runtime.app import App, _leftover_threads
from wvwasi.runtime.manifest import load_manifest
from xvfb import screenshot

NOTE = "Groceries\\nMilk and bread. Eggs!"
STEP_WAIT = 30.0


def click(selector: str) -> str:
    return f"(() => {{ document.querySelector({json.dumps(selector)}).click(); return true; }})()"


def drive(app: App, shot: Path, result: dict[str, Any]) -> None:
    window = app.window

    def js(expression: str) -> Any:
        return window.evaluate(expression, STEP_WAIT)

    def wait(expression: str, what: str) -> Any:
        deadline = time.monotonic() + STEP_WAIT
        while time.monotonic() < deadline:
            value = js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"{what}: still false: {expression}")

    try:
        if not window.loaded.wait(STEP_WAIT):
            raise TimeoutError("the page did not load")
        result["loaded"] = True
        js("(() => { const t = document.getElementById('text');"
           f" t.value = '{NOTE}'; t.dispatchEvent(new Event('input'));"
           " document.getElementById('save').click(); return true; })()")
        result["listed"] = wait(
            "[...document.querySelectorAll('#note-list .title')].map((e) => e.textContent)"
            ".filter((t) => t === 'Groceries')", "note listed")
        result["words"] = wait(
            "document.getElementById('st-words').textContent === '5' && "
            "document.getElementById('st-sentences').textContent", "statistics")

        js(click('[data-tab="image"]'))
        pixel = "[...document.getElementById('canvas').getContext('2d')" \
                ".getImageData(0, 0, 1, 1).data]"
        result["pixel_before"] = js(pixel)
        js(click('[data-op="2"]'))
        wait("document.getElementById('image-state').textContent.startsWith('Filtered')",
             "invert")
        result["pixel_inverted"] = js(pixel)

        js(click("#crash"))
        result["banner"] = wait(
            "!document.getElementById('banner').hidden && "
            "document.getElementById('banner-text').textContent", "crash banner")
        result["log"] = wait(
            "document.getElementById('log').textContent.includes('crash requested') && "
            "document.getElementById('log').textContent", "log panel")

        # The next request starts a fresh filter instance.
        js("document.getElementById('image-state').textContent = ''")
        js(click('[data-op="1"]'))
        wait("document.getElementById('image-state').textContent.startsWith('Filtered')",
             "filter after the crash")
        result["pixel_gray"] = js(pixel)

        time.sleep(0.5)  # let the last frame paint before the screenshot
        screenshot(os.environ["DISPLAY"], shot)
        result["screenshot"] = str(shot)
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        window.close()


def main() -> int:
    project, backend, shot = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    app = App(load_manifest(project), backend=backend)  # type: ignore[arg-type]
    result: dict[str, Any] = {"backend": backend}

    def started(app: App) -> None:
        threading.Thread(target=drive, args=(app, shot, result), daemon=True).start()

    result["status"] = app.run(on_started=started)
    result["threads_left"] = _leftover_threads()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

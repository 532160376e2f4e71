"""Drive the Notes example in a real window like a user would, for tests/test_window.py.

Usage: python tests/window_driver.py PROJECT BACKEND SCREENSHOT.png EXPORT_DIR (DISPLAY set).
Runs the app in this process, clicks through the page (write and save a note, read its
statistics, filter the image, crash the filter service, read the log, export the notes to
EXPORT_DIR through the native folder dialog, typed into with xdotool), saves a screenshot, closes
the window and prints one JSON object: what the page showed at each step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from driven_app import run_driven
from xvfb import screenshot

from wvwasi.runtime.app import App
from wvwasi.runtime.manifest import load_manifest

NOTE = "Groceries\\nMilk and bread. Eggs!"
STEP_WAIT = 30.0


def click(selector: str) -> str:
    return f"(() => {{ document.querySelector({json.dumps(selector)}).click(); return true; }})()"


def dialog_open() -> str | None:
    """The window id of the native folder dialog (GTK and Qt title it "Open folder"), if shown."""
    found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", "Open folder"],
                           capture_output=True, text=True, timeout=30)
    return found.stdout.split()[-1] if found.stdout.split() else None


def pick_in_dialog(folder: Path) -> None:
    """Answer the native folder dialog with `folder`, typing as a user would."""
    deadline = time.monotonic() + STEP_WAIT
    while (dialog := dialog_open()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the folder dialog never appeared")
        time.sleep(0.1)
    time.sleep(0.5)  # let it finish mapping; there is no window manager to give it focus
    subprocess.run(["xdotool", "windowfocus", "--sync", dialog], check=True, timeout=30)
    # Ctrl+L opens GTK's location entry first (typing "/" would open it but lose the next keys);
    # Qt's dialog starts in its path entry and ignores it.
    subprocess.run(["xdotool", "key", "ctrl+l"], check=True, timeout=30)
    time.sleep(0.3)
    subprocess.run(["xdotool", "type", "--delay", "20", f"{folder}/"], check=True, timeout=30)
    # Return may first only enter the folder (GTK), then choose it.
    for _ in range(3):
        time.sleep(0.5)
        if dialog_open() is None:
            return
        subprocess.run(["xdotool", "key", "Return"], check=True, timeout=30)
    time.sleep(0.5)
    if dialog_open() is not None:
        subprocess.run(["xdotool", "key", "Escape"], check=True, timeout=30)
        raise RuntimeError("the folder dialog did not accept the typed folder")


def drive(app: App, shot: Path, export_dir: Path, result: dict[str, Any]) -> None:
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

        js(click("#export"))
        pick_in_dialog(export_dir)
        result["exported"] = wait("document.getElementById('export-result').textContent",
                                  "export")

        time.sleep(0.5)  # let the last frame paint before the screenshot
        screenshot(os.environ["DISPLAY"], shot)
        result["screenshot"] = str(shot)
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        window.close()


def main() -> int:
    project, backend, shot, export_dir = (Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]),
                                          Path(sys.argv[4]))
    app = App(load_manifest(project), backend=backend)  # type: ignore[arg-type]
    result: dict[str, Any] = {"backend": backend}
    return run_driven(app, lambda app: drive(app, shot, export_dir, result), result)


if __name__ == "__main__":
    sys.exit(main())

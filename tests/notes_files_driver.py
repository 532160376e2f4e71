"""Drive the Notes example's .note files in a real window, for tests/test_desktop_window.py.

Usage: python tests/notes_files_driver.py PROJECT NOTE_FILE SAVE_TO (DISPLAY set). Runs Notes in
this process launched with NOTE_FILE (as a double-click does), waits for the note to show, then
clicks File > "Save as .note file…" with the file dialog answered by SAVE_TO (the bridge's file
picker callback, as the native dialog would), and prints one JSON object: what the page showed.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from desktop_driver import WAIT, click_menu, wait_for
from driven_app import run_driven

from wvwasi.runtime.app import App
from wvwasi.runtime.bridge.grants import FileRequest
from wvwasi.runtime.launch import classify
from wvwasi.runtime.manifest import load_manifest


def main() -> int:
    project, note, save_to = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    manifest = load_manifest(project)
    result: dict[str, Any] = {"requests": []}
    app = App(manifest, backend="gtk", launch=classify([note], os.getcwd(), manifest))

    def file_picker(request: FileRequest) -> list[Path] | None:
        result["requests"].append([request.kind, list(request.accept), request.suggested_name])
        return [save_to]

    app.bridge.file_picker = file_picker  # before the page connects

    def drive(app: App) -> None:
        try:
            if not app.window.loaded.wait(WAIT):
                raise TimeoutError("the page never loaded")
            result["editor"] = wait_for(app, "document.getElementById('text').value")
            result["title"] = wait_for(app, "document.getElementById('note-title').textContent")
            app.window.evaluate("document.getElementById('text').value += '\\nEdited.'", WAIT)
            click_menu("Save as .note file…")
            deadline = time.monotonic() + WAIT
            while not save_to.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            result["saved"] = save_to.read_text() if save_to.exists() else None
        except Exception:
            result["error"] = traceback.format_exc()
        finally:
            app.window.close()

    return run_driven(app, drive, result)


if __name__ == "__main__":
    sys.exit(main())

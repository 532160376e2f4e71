"""The shared end of the window drivers (window_driver.py, bulk_driver.py, hostfs_window_driver.py):
run the app in this process, drive it from a thread once it has started, print one JSON result."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from wvwasi.runtime.app import App, _leftover_threads


def run_driven(app: App, drive: Callable[[App], None], result: dict[str, Any]) -> int:
    """Run `app` until its window closes, `drive(app)` on a thread once it has started (the driver
    closes the window); print `result` with the run's status and the threads left as JSON."""

    def started(app: App) -> None:
        threading.Thread(target=drive, args=(app,), daemon=True).start()

    result["status"] = app.run(on_started=started)
    result["threads_left"] = _leftover_threads()
    print(json.dumps(result), flush=True)
    return 0

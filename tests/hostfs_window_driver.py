"""A page-supplied module on host folders in a real app window, for tests/test_page_hostfs.py.

Usage: python tests/hostfs_window_driver.py PROJECT BACKEND OUTSIDE (DISPLAY set). Runs the app
(its `[page] preopens` lend `/data` rw and `/ro` ro) in this process; once the page has loaded,
the page runs ui/mods/hostfs.wasm in its Worker (browser engine) with both folders, then with
escape attempts, and this prints one JSON object: {status, threads_left, files, runs}.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from driven_app import run_driven

from wvwasi.runtime.app import App
from wvwasi.runtime.manifest import load_manifest

RUN = """(async () => {
  const r = await WasiWorker.run('mods/hostfs.wasm', {args: %s, preopens: ['/data', '/ro']});
  return {code: r.exitCode, lines: r.stdout.trim().split('\\n')};
})()"""
WORK = ["r:/data/hello.txt", "w:/data/new.txt:written", "a:/data/new.txt:+more",
        "m:/data/new.txt:/data/renamed.txt", "d:/data/sub", "l:/data", "r:/data/renamed.txt",
        "r:/ro/fixed.txt"]
ESCAPES = ["r:/data/../outside/secret", "r:/data/planted/secret", "s:/etc/passwd:/data/abs",
           "w:/ro/new.txt:x", "u:/ro/fixed.txt"]


def drive(app: App, outside: Path, result: dict[str, Any]) -> None:
    window = app.window
    try:
        if not window.loaded.wait(30):
            raise TimeoutError("the page did not load")
        result["isolated"] = window.evaluate("crossOriginIsolated", 30)
        result["runs"] = [window.evaluate(RUN % json.dumps(args), 60) for args in (WORK, ESCAPES)]
        data = app.host.paths.resolve("$APPDATA/data")
        result["files"] = sorted(os.listdir(data))
        result["renamed"] = (data / "renamed.txt").read_text()
        result["outside"] = sorted(os.listdir(outside))
        for _ in range(100):  # the page unmounts when the run has ended: wait for the bridge
            if not app.bridge._folders:
                break
            time.sleep(0.05)
        result["mounts_left"] = len(app.bridge._folders)
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        window.close()


def main() -> int:
    project, backend, outside = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    app = App(load_manifest(project), backend=backend)  # type: ignore[arg-type]
    data = app.host.paths.resolve("$APPDATA/data")
    ro = app.host.paths.resolve("$APPDATA/ro")
    data.mkdir(parents=True, exist_ok=True)
    ro.mkdir(parents=True, exist_ok=True)
    (data / "hello.txt").write_text("hi from the host")
    (data / "planted").symlink_to(outside)
    (ro / "fixed.txt").write_text("read-only")
    result: dict[str, Any] = {"backend": backend}
    return run_driven(app, lambda app: drive(app, outside, result), result)


if __name__ == "__main__":
    sys.exit(main())

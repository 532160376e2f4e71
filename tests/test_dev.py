"""`wvwasi dev` in a real window under Xvfb: UI edits reload the page, service edits rebuild and
restart the service, and the page's worker sees the exit, respawns and gets the new behaviour.

The page reports what it sees through a `probe` task service that appends to a log file under
$APPDATA (tests/fixtures/dev_project).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from xvfb import xvfb

PROJECT = Path(__file__).parent / "fixtures" / "dev_project"
IDENTIFIER = "dev.wvwasi.tests.devloop"
#: Upper bound for one step to show up; generous for a loaded 2-core machine (not a timing test).
STEP_WAIT = 60.0


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb() as d:
        yield d


class DevRun:
    """A `wvwasi dev` process on a copy of the fixture project; its stdout is collected live."""

    def __init__(self, root: Path, display: str, home: Path) -> None:
        self.root = root
        self.events = home / "data" / IDENTIFIER / "events" / "events.log"
        env = {**os.environ, "DISPLAY": display, "XDG_DATA_HOME": str(home / "data"),
               "XDG_CACHE_HOME": str(home / "cache")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wvwasi", "dev", str(root), "--webview", "gtk"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.output: list[str] = []
        self.errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, into), daemon=True)
            for stream, into in ((self.proc.stdout, self.output), (self.proc.stderr, self.errors))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.errors)

    def lines(self) -> list[str]:
        try:
            return self.events.read_text().splitlines()
        except FileNotFoundError:
            return []

    def _wait(self, found: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STEP_WAIT
        while time.monotonic() < deadline and self.proc.poll() is None:
            if found():
                return
            time.sleep(0.1)
        if found():
            return
        self.stop()
        pytest.fail(f"{what} never came; events: {self.lines()}\n"
                    "stdout:\n" + "\n".join(self.output) + f"\nstderr:\n{self.stderr}")

    def wait_event(self, line: str, after: int = 0) -> int:
        """Wait until the page logged `line` at index >= `after`; returns its index."""
        self._wait(lambda: line in self.lines()[after:], f"event {line!r}")
        return self.lines().index(line, after)

    def wait_output(self, text: str) -> None:
        """Wait until `wvwasi dev` printed a line containing `text`."""
        self._wait(lambda: any(text in line for line in self.output), f"output {text!r}")

    def stop(self) -> int:
        """SIGINT (Ctrl+C), as a developer would; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        return self.proc.returncode


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_dev_reloads_ui_and_restarts_edited_service(tmp_path: Path, display: str) -> None:
    root = tmp_path / "project"
    shutil.copytree(PROJECT, root)
    run = DevRun(root, display, tmp_path / "home")
    try:
        # Both services were missing: built, then the page loads and talks to them.
        first = run.wait_event("page-v1 loaded")
        run.wait_event("reply v1:ping", first)

        # A UI edit reloads the page: the new script runs.
        edit(root / "ui" / "app.js", "'page-v1'", "'page-v2'")
        second = run.wait_event("page-v2 loaded", first)
        run.wait_event("reply v1:ping", second)

        # A service edit rebuilds and restarts it: the worker sees the exit, then respawns and
        # gets the new behaviour.
        edit(root / "services" / "echo.c", '"v1"', '"v2"')
        exited = run.wait_event("echo exited", second)
        run.wait_event("reply v2:ping", exited)

        # A broken edit keeps the running build.
        edit(root / "services" / "echo.c", "int main(void) {", "int main(void) { syntax error")
        run.wait_output("services.echo keeps running its previous build")
    finally:
        status = run.stop()
    out = "\n".join(run.output)
    assert status == 0, f"stdout:\n{out}\nstderr:\n{run.stderr}"
    assert "wvwasi: building services.echo" in out and "wvwasi: building services.probe" in out
    assert "services.echo rebuilt and restarted" in out
    assert "UI changed, page reloaded" in out
    assert "error:" in run.stderr  # clang's message for the broken edit, shown to the developer
    assert "Traceback" not in run.stderr and "panicked" not in run.stderr, run.stderr
    events = run.lines()
    restart = events.index("echo exited")
    assert "reply v2:ping" not in events[:restart]
    assert "reply v1:ping" not in events[restart:]
    assert (root / "build" / "echo.wasm").is_file()

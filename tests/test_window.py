"""The Notes example in a real pywebview window under Xvfb, on GTK/WebKitGTK and on Qt WebEngine.

- `wvwasi run --self-test` opens the window (services built from C by their build.command) and
  the page starts every service and round-trips messages with them; the JSON report must be all
  green and the app must close without leftover threads or errors.
- tests/window_driver.py clicks through the UI (note saved by the background store, statistics
  from the task, image filtered by the dedicated frames service, a trap shown in the page, the
  stderr log panel, an export into a folder picked in the native dialog) and saves a screenshot
  to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from xvfb import xvfb

from wvwasi.packager.services import prepare

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "notes"
ARTIFACTS = REPO / "test-artifacts"
DRIVER = Path(__file__).parent / "window_driver.py"
IDENTIFIER = "dev.wvwasi.examples.notes"
BACKENDS = ("gtk", "qt")


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb() as d:
        yield d


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example, its services built from C by their build.command."""
    root = tmp_path_factory.mktemp("notes") / "notes"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("build"))
    assert prepare(root, "test") is not None, "building the example's services failed"
    return root


def app_env(display: str, home: Path) -> dict[str, str]:
    """The app's environment: the screen, and private data, cache and temp folders."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return {**os.environ, "DISPLAY": display, "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"), "TMPDIR": str(home / "tmp")}


def assert_clean_exit(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    for noise in ("Traceback", "panicked", "Segmentation fault"):
        assert noise not in proc.stderr, proc.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_test_round_trips_every_service(
    backend: str, notes: Path, display: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wvwasi", "run", str(notes), "--self-test", "--webview", backend],
        env=app_env(display, tmp_path), capture_output=True, text=True, timeout=180,
    )
    assert_clean_exit(proc)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{backend}: launch -> page loaded {report['load_seconds']} s, "
          f"self-test done {report['seconds']} s")
    assert report["ok"] is True and report["error"] is None
    assert report["backend"] == backend
    assert report["threads_left"] == []
    assert list((tmp_path / "tmp").iterdir()) == []  # no temp folder left behind
    assert set(report["services"]) == {"stats", "filter", "store", "export"}
    assert all(check["ok"] for check in report["services"].values()), report["services"]
    # The page's own round trips (examples/notes/ui/app.js: wvwasiSelfTest).
    assert report["app_checks"] == {
        "stats": {"ok": True, "detail": "4 words"},
        "store": {"ok": True, "detail": "0 notes"},
        "filter": {"ok": True, "detail": "inverted 320x240"},
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_notes_app_works_in_a_real_window(
    backend: str, notes: Path, display: str, tmp_path: Path
) -> None:
    shot = ARTIFACTS / f"notes-{backend}.png"
    shot.unlink(missing_ok=True)
    export_dir = tmp_path / "picked"
    export_dir.mkdir()
    proc = subprocess.run(
        [sys.executable, str(DRIVER), str(notes), backend, str(shot), str(export_dir)],
        env=app_env(display, tmp_path), capture_output=True, text=True, timeout=180,
    )
    assert_clean_exit(proc)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, result["error"]
    assert result["status"] == 0 and result["threads_left"] == []

    # The background store saved the note as a file under $APPDATA and listed it.
    assert result["listed"] == ["Groceries"]
    saved = list((tmp_path / "data" / IDENTIFIER / "notes").glob("*.txt"))
    assert [p.read_text() for p in saved] == ["Groceries\nMilk and bread. Eggs!"]
    # The stats task counted it: 5 words, 2 sentences.
    assert result["words"] == "2"
    # The dedicated frames service inverted the canvas, then (after the crash) grayed it.
    before, inverted, gray = (result[k] for k in ("pixel_before", "pixel_inverted", "pixel_gray"))
    assert inverted[:3] == [255 - c for c in before[:3]] and inverted[3] == before[3]
    assert gray[0] == gray[1] == gray[2]
    # The trap reached the page as an error, and the service's stderr reached the log panel.
    assert "trapped" in result["banner"] and "filter" in result["banner"]
    assert "filter: ready" in result["log"] and "filter: crash requested" in result["log"]

    # The folder picked in the native dialog was granted to the export task for that run.
    assert result["exported"] == "1 note exported to “picked”"
    assert (export_dir / "Groceries.txt").read_text() == "Groceries\nMilk and bread. Eggs!"

    with Image.open(shot) as image:
        assert image.size == (1280, 800)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 100, "the screenshot is (nearly) blank"

"""Desktop integration in a real window under Xvfb (GTK): the first launch's document reaches
the page once it listens; later launches with a document and with a URL exit 0 within seconds
and the running page receives both; a process without the channel's key is refused while the
app keeps running; menu clicks reach the page (tests/desktop_driver.py drives it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from xvfb import xvfb

DRIVER = Path(__file__).parent / "desktop_driver.py"
PROJECT = Path(__file__).parent / "desktop_app"


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb() as d:
        yield d


def test_launches_are_handed_to_the_running_page_and_menus_click_through(
    display: str, tmp_path: Path
):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "first.wvdoc").write_text("one")
    (docs / "second.txt").write_text("two")
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "DISPLAY": display, "XDG_RUNTIME_DIR": str(run),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "TMPDIR": str(tmp_path / "tmp")}
    proc = subprocess.run(
        [sys.executable, str(DRIVER), str(PROJECT), "gtk", "first.wvdoc",
         str(docs / "second.txt")],
        cwd=docs, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, result["error"]
    assert result["status"] == 0 and result["threads_left"] == []

    (first,) = result["first"]  # held until the page listened, a second after it loaded
    # each file arrives with its grant (the page's JSON copy shows its name and mode)
    assert first == {"files": [{"path": str(docs / "first.wvdoc"), "name": "first.wvdoc",
                                "mode": "rw", "grant": {"name": "first.wvdoc", "mode": "rw"}}],
                     "urls": [], "args": [], "cwd": str(docs)}
    for launch in ("second_launch", "url_launch"):
        print(f"{launch}: exit {result[launch]['status']} in {result[launch]['seconds']} s")
        assert result[launch]["status"] == 0, result[launch]["stderr"]
        assert result[launch]["seconds"] < 10
    _, second, url = result["opens"]
    assert second["files"] == [{"path": str(docs / "second.txt"), "name": "second.txt",
                                "mode": "ro", "grant": {"name": "second.txt", "mode": "ro"}}]
    assert result["second_text"] == "two"  # read through its grant
    assert url["urls"] == ["wvdesk://note/42?x=1"] and url["files"] == []
    assert result["refused"] is True
    assert result["menus"] == [{"id": "hello"}, {"id": "deep"}]
    assert "single instance: refused a connection" in proc.stderr

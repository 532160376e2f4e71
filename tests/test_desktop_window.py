"""Desktop integration in a real window under Xvfb (GTK): the first launch's document reaches
the page once it listens; later launches with a document and with a URL exit 0 within seconds
and the running page receives both; a process without the channel's key is refused while the
app keeps running; menu clicks reach the page, also of a menu the page set, and clicks on the
tray icon in a real system tray (trayer) and on its menu; the page's
notification reaches a notification server on a private session bus (tests/desktop_driver.py
drives it). The Notes
example opens a .note file it was launched with and saves to a file the user picks from its
menu (tests/notes_files_driver.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dbus_session import NotificationServer, session_bus
from xvfb import xvfb

from wvwasi.packager.services import prepare

DRIVER = Path(__file__).parent / "desktop_driver.py"
PROJECT = Path(__file__).parent / "desktop_app"
EXAMPLE = Path(__file__).parent.parent / "examples" / "notes"


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb() as d:
        yield d


@contextmanager
def system_tray(display: str) -> Iterator[None]:
    """An XEmbed system tray (Debian's trayer) on `display` for the block."""
    tray = subprocess.Popen(["trayer", "--edge", "top", "--align", "right"],
                            env={**os.environ, "DISPLAY": display},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        tray.terminate()
        tray.wait(10)


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
    with session_bus(tmp_path) as bus, system_tray(display):
        server = NotificationServer(bus)
        env = {**os.environ, "DISPLAY": display, "XDG_RUNTIME_DIR": str(run),
               "XDG_DATA_HOME": str(tmp_path / "data"),
               "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp"),
               "DBUS_SESSION_BUS_ADDRESS": bus}
        try:
            proc = subprocess.run(
                [sys.executable, str(DRIVER), str(PROJECT), "gtk", "first.wvdoc",
                 str(docs / "second.txt")],
                cwd=docs, env=env, capture_output=True, text=True, timeout=240)
        finally:
            server.close()
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
    # (each click is handed on from its own thread: two clicks a moment apart may swap)
    assert sorted(e["id"] for e in result["menus"]) == ["deep", "hello"]
    # the tray icon, in a real XEmbed system tray: a click on it, its menu and their items
    assert result["tray_icon_click"] == {"id": None}
    assert result["tray_menu_labels"] == ["Tray hello", "", "Tray more"]
    # (each click is handed on from its own thread: two clicks a moment apart may swap)
    assert sorted(e["id"] for e in result["tray_items"]) == ["tray-deep", "tray-hello"]
    assert "single instance: refused a connection" in proc.stderr
    # wvwasi.window.open: other pages refused; a second window with its own session and grants
    assert result["open_refused"] == ["permission"] * 5 and result["open_bad_size"] == "invalid"
    assert result["opened"] == "ok" and result["second_width"] == 500  # (the menu bar: height)
    assert result["second_retitled"] == "ok"  # the second window's title, not the main one's
    assert result["titles"] == ["Desktop Test", "Second retitled"]
    assert result["grant_here"] == "ok" and result["grant_there"] == "permission"
    assert result["second_closed"] is True and result["main_after"] == "Desktop Test"
    assert result["reopened"] == "ok"  # left open: closing the main window below ends the app
    # wvwasi.window from the page: the X window's title, its size, a refused call, close
    assert result["retitled"] is True and result["inner_width"] == 640
    assert result["bad_resize"] == "invalid" and result["closed_by_page"] is True
    # wvwasi.notify reached the desktop's notification server; a bad argument is a TypeError
    assert result["notified"] == "shown" and result["bad_notify"] == "TypeError"
    assert server.received == [("Desktop Test", "From the page", "Body ✓")]
    # wvwasi.window.setMenu replaced the manifest's menu; its click reached the page
    assert "Page item" in result["menu_after_set"] and "Other (a:b)" in result["menu_after_set"]
    assert "Say hello" not in result["menu_after_set"]
    assert result["page_menu"] == {"id": "page"}
    assert result["bad_menu"].startswith("invalid: wvwasi.window.setMenu(): menu[0].items[0].id:")


NOTES_DRIVER = Path(__file__).parent / "notes_files_driver.py"


def test_notes_opens_a_note_file_and_saves_to_a_picked_file(display: str, tmp_path: Path):
    root = tmp_path / "notes"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("build"))
    assert prepare(root, "test") is not None, "building the example's services failed"
    (tmp_path / "tmp").mkdir()
    doc = tmp_path / "Shopping.note"
    doc.write_text("Shopping\nApples")
    save_to = tmp_path / "picked" / "copy.note"
    save_to.parent.mkdir()
    env = {**os.environ, "DISPLAY": display, "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp")}
    proc = subprocess.run([sys.executable, str(NOTES_DRIVER), str(root), str(doc),
                           str(save_to)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, result["error"]
    assert result["status"] == 0 and result["threads_left"] == []
    assert result["editor"] == "Shopping\nApples" and result["title"] == "Shopping"
    assert result["requests"] == [["save", ["note"], "Shopping.note"]]
    assert result["saved"] == "Shopping\nApples\nEdited."
    assert doc.read_text() == "Shopping\nApples"  # "Save as" wrote the picked file only
    # kept as a note of the app too, saved with the edit (the background store's folder)
    notes = list((tmp_path / "data" / "dev.wvwasi.examples.notes" / "notes").glob("*.txt"))
    assert [p.read_text() for p in notes] == ["Shopping\nApples\nEdited."]

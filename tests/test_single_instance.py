"""runtime/single_instance.py and runtime/launch.py: a later launch hands its command line to
the running instance over an authenticated per-user channel; what it names is sorted into files,
URLs and arguments. The real-window end of it is tests/test_desktop_window.py."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from wvwasi.runtime import single_instance as si
from wvwasi.runtime.app import relaunch
from wvwasi.runtime.launch import classify
from wvwasi.runtime.manifest import load_manifest

IDENT = "dev.wvwasi.tests.single"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    return run


def serve(folder: Path, transport: si.Transport) -> tuple[si.Primary, queue.Queue[Any]]:
    primary = si.acquire(IDENT, folder=folder, transport=transport)
    assert primary is not None
    got: queue.Queue[Any] = queue.Queue()
    primary.serve(got.put)
    return primary, got


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_a_second_launch_is_handed_to_the_first(folder: Path, transport: si.Transport):
    primary, got = serve(folder, transport)
    try:
        assert si.acquire(IDENT, folder=folder, transport=transport) is None  # lock taken
        si.forward(IDENT, {"argv": ["a.note"], "cwd": "/x"}, folder=folder, transport=transport)
        assert got.get(timeout=5) == {"argv": ["a.note"], "cwd": "/x"}
        assert (folder / f"{primary.name}.key").stat().st_mode & 0o777 == 0o600
    finally:
        primary.close()
    assert not (folder / f"{primary.name}.key").exists()
    again = si.acquire(IDENT, folder=folder, transport=transport)  # the lock was released
    assert again is not None
    again.close()
    with pytest.raises(si.ForwardError, match="no running instance answered"):
        si.forward(IDENT, {"argv": []}, folder=folder, transport=transport, timeout=0.3)


def raw_connection(folder: Path, primary: si.Primary) -> socket.socket:
    if primary.transport == "unix":
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(str(folder / f"{primary.name}.sock"))
    else:
        port = int((folder / f"{primary.name}.port").read_text())
        conn = socket.create_connection(("127.0.0.1", port))
    conn.settimeout(5)
    return conn


def answer(conn: socket.socket) -> bytes:
    """Everything the listener sends until it closes the connection."""
    data = b""
    while chunk := conn.recv(100):
        data += chunk
    return data


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_a_process_without_the_key_is_refused_and_the_app_keeps_running(
    folder: Path, transport: si.Transport
):
    primary, got = serve(folder, transport)
    try:
        body = b'{"argv": ["evil"], "cwd": "/"}'
        for mac in (b"\0" * 32, si.mac(b"guessed key".ljust(32, b"\0"), b"\0" * 32, body)):
            with raw_connection(folder, primary) as conn:
                nonce = conn.recv(si.NONCE)
                assert len(nonce) == si.NONCE
                conn.sendall(struct.pack(">I", len(body)) + body + mac)
                assert answer(conn) == b""  # closed, no OK
        # a replayed answer to another nonce is refused too
        key = (folder / f"{primary.name}.key").read_bytes()
        with raw_connection(folder, primary) as conn:
            conn.recv(si.NONCE)
            conn.sendall(struct.pack(">I", len(body)) + body + si.mac(key, b"\1" * 32, body))
            assert answer(conn) == b""
        with raw_connection(folder, primary) as conn:  # too big: refused before reading it
            conn.recv(si.NONCE)
            conn.sendall(struct.pack(">I", si.MAX_MESSAGE + 1))
            assert answer(conn) == b""
        with raw_connection(folder, primary) as conn:  # silent: dropped after READ_TIMEOUT
            assert answer(conn)[si.NONCE:] == b""
        assert got.empty()
        si.forward(IDENT, {"argv": ["ok"], "cwd": "/"}, folder=folder, transport=transport)
        assert got.get(timeout=5)["argv"] == ["ok"]
    finally:
        primary.close()


def test_the_per_user_folder_must_be_private(tmp_path: Path, monkeypatch):
    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    monkeypatch.setattr(si.tempfile, "gettempdir", lambda: str(shared))
    folder = si.user_dir()
    assert folder == shared / f"wvwasi-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700
    folder.chmod(0o777)  # planted or loosened: not used
    with pytest.raises(OSError, match="not a private folder"):
        si.user_dir()
    folder.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    folder.symlink_to(tmp_path / "elsewhere")  # a link another user planted
    with pytest.raises(OSError, match="not a private folder"):
        si.user_dir()
    if os.getuid() == 0:
        folder.unlink()
        folder.mkdir(mode=0o700)
        os.chown(folder, 65534, 65534)  # another user's folder
        with pytest.raises(OSError, match="not a private folder"):
            si.user_dir()


def test_launch_arguments_are_sorted_into_files_urls_and_args(tmp_path: Path):
    (tmp_path / "ui").mkdir()
    (tmp_path / "ui" / "index.html").write_text("<p>")
    (tmp_path / "wvwasi.toml").write_text(
        '[app]\nname = "S"\nidentifier = "dev.wvwasi.s"\nurl_schemes = ["wvnotes"]\n'
        '[[bundle.file_associations]]\nextensions = ["note"]\nmime_type = "text/x-note"\n'
        'name = "Note"\nrole = "editor"\n')
    manifest = load_manifest(tmp_path, platform="linux")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.NOTE").write_text("a")
    (docs / "b b.txt").write_text("b")
    launch = classify(["a.NOTE", f"file://{docs}/b%20b.txt", "WvNotes://open?id=1",
                       "https://example.com/", "--flag", "missing.note"], str(docs), manifest)
    assert launch.detail() == {
        "files": [{"path": str(docs / "a.NOTE"), "name": "a.NOTE", "mode": "rw"},
                  {"path": str(docs / "b b.txt"), "name": "b b.txt", "mode": "ro"}],
        "urls": ["WvNotes://open?id=1"],
        "args": ["https://example.com/", "--flag", "missing.note"],
        "cwd": str(docs),
    }
    with pytest.raises(ValueError, match="at most"):
        classify(["x"] * 1000, "/", manifest)


def test_a_flood_of_silent_connections_is_bounded_and_then_served(folder: Path):
    primary, got = serve(folder, "unix")
    conns = []
    try:
        for _ in range(50):  # hold every slot and more, saying nothing
            conn = raw_connection(folder, primary)
            conns.append(conn)
        readers = [t for t in threading.enumerate() if t.name == "wvwasi-single-instance-conn"]
        assert len(readers) <= si.MAX_CONNECTIONS
        # past the bound, connections are closed at once: no nonce for them
        closed = 0
        for conn in conns[si.MAX_CONNECTIONS + 5:]:
            conn.settimeout(si.READ_TIMEOUT / 2)
            with contextlib.suppress(TimeoutError):
                closed += conn.recv(si.NONCE) == b""
        assert closed >= 1
        # the silent ones time out (READ_TIMEOUT) and free their slots: a real launch gets in
        si.forward(IDENT, {"argv": ["after"], "cwd": "/"}, folder=folder, timeout=10)
        assert got.get(timeout=5)["argv"] == ["after"]
    finally:
        for conn in conns:
            conn.close()
        primary.close()


NEXT_INSTANCE = """
import sys
from pathlib import Path
from wvwasi.runtime import single_instance as si
folder, out = Path(sys.argv[1]), Path(sys.argv[2])
primary = si.acquire(sys.argv[3], folder=folder)
if primary is None:
    si.forward(sys.argv[3], {"argv": ["relaunched"], "cwd": "/"}, folder=folder)
out.with_name("part").write_text("handed over" if primary is None else "first instance")
out.with_name("part").rename(out)
"""


def test_relaunch_starts_a_first_instance_not_a_hand_over(folder: Path, tmp_path: Path):
    """`wvwasi.app.relaunch()` (runtime/app.py's relaunch): the new process, a real one doing
    what a launch does, must become the first instance, not hand its launch to the exiting
    one (which would then exit, leaving no app)."""
    primary, got = serve(folder, si.default_transport())
    out = tmp_path / "next"
    try:
        relaunch([sys.executable, "-c", NEXT_INSTANCE, str(folder), str(out), IDENT], primary)
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out.read_text() == "first instance"
        assert got.empty()
    finally:
        primary.close()


def test_a_per_user_folder_deeper_than_a_socket_path_holds(tmp_path: Path):
    """sun_path holds 108 bytes: a deep folder (a long home or XDG_RUNTIME_DIR) still works."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True, mode=0o700)
    primary, got = serve(deep, "unix")
    try:
        assert len(os.fsencode(deep / f"{primary.name}.sock")) > 108
        si.forward(IDENT, {"argv": ["deep"], "cwd": "/"}, folder=deep, transport="unix")
        assert got.get(timeout=5) == {"argv": ["deep"], "cwd": "/"}
    finally:
        primary.close()

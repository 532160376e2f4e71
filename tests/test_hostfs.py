"""runtime/bridge/hostfs.py directly: the WASI file calls page-supplied modules make on a lent host
folder (the browser tests in test_page_hostfs.py go through the whole path; these cover every
call). These run on Windows too (hostfs_win.py; tests/test_windows_pytest.py runs them under
the Windows CPython in Wine), where links are planted by a Unix `ln` (Wine shows Unix symlinks
as what they point at: the opened handle's final path catches them) and Windows' own path tricks
are tried on top."""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from unix_side import plant_link, under_wine, unix_path, unix_shell

from wvwasi.runtime.bridge.hostfs import (
    MAX_HANDLES,
    MAX_IO,
    HandleBudget,
    HostFolder,
    encode,
    lend,
)
from wvwasi.runtime.host.hostpath import Root

EPERM, EACCES, EBADF, EEXIST, EISDIR, ELOOP, EMFILE, ENOENT, ENOTDIR, EINVAL = (
    63, 2, 8, 20, 31, 32, 33, 44, 54, 28)
WINDOWS = sys.platform == "win32"
#: Opening a link inside the folder: ELOOP (not followed); under Wine, which shows a Unix
#: symlink as its target, the handle's final path names another file: EPERM.
LINK_OPENED = (ELOOP, EPERM) if WINDOWS else (ELOOP,)


def still_open(handles: list[int]) -> list[int]:
    """Those of these descriptors (Linux) or handles (Windows) that are still open."""
    if not WINDOWS:
        return [fd for fd in handles if os.path.exists(f"/proc/self/fd/{fd}")]
    import ctypes

    flags = ctypes.c_ulong()
    get = ctypes.WinDLL("kernel32").GetHandleInformation
    return [h for h in handles if get(ctypes.c_void_p(h), ctypes.byref(flags))]


def answer(raw: bytes) -> tuple[dict[str, Any], bytes]:
    (size,) = struct.unpack_from("<I", raw)
    return json.loads(raw[4:4 + size]), raw[4 + size:]


class Client:
    def __init__(self, folder: HostFolder) -> None:
        self.folder = folder

    def __call__(self, op: str, data: bytes = b"", **head: Any) -> tuple[dict[str, Any], bytes]:
        return answer(self.folder.call(encode({"op": op, **head}, data)))

    def ok(self, op: str, data: bytes = b"", **head: Any) -> tuple[dict[str, Any], bytes]:
        out, extra = self(op, data, **head)
        assert out["errno"] == 0, (op, head, out)
        return out, extra


@pytest.fixture
def folder(tmp_path: Path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("hello")
    budget = HandleBudget(1000)
    made: list[HostFolder] = []

    def make(mode: str = "rw", budget: HandleBudget = budget) -> Client:
        made.append(lend(Root.open(tmp_path / "in"), mode, budget))  # type: ignore[arg-type]
        return Client(made[-1])

    yield make
    for f in made:
        f.close()


def test_files_are_read_written_appended_truncated_and_stat(folder, tmp_path: Path) -> None:
    c = folder()
    h = c.ok("open", h=0, path="new.txt", creat=True, write=True, read=True)[0]["h"]
    assert c.ok("write", b"0123456789", h=h)[0]["n"] == 10
    assert c.ok("write", b"AB", h=h, at="2")[0]["n"] == 2
    assert c.ok("write", b"!", h=h, append=True)[0]["n"] == 1
    assert c.ok("seek", h=h, offset="0", whence=0)[0]["pos"] == "0"
    assert c.ok("read", h=h, len=100)[1] == b"01AB456789!"
    assert c.ok("read", h=h, len=4, at="1")[1] == b"1AB4"
    c.ok("truncate", h=h, size="4")
    c.ok("truncate", h=h, size="2", grow=True)  # allocate never shrinks
    st = c.ok("stat", h=h)[0]
    assert st["size"] == "4" and st["type"] == 4
    c.ok("times", h=h, atim="1000000000", mtim="2000000000")
    assert os.stat(tmp_path / "in" / "new.txt").st_mtime_ns == 2_000_000_000
    c.ok("times", h=0, path="a.txt", follow=True, mtimNow=True)
    c.ok("sync", h=h)
    c.ok("close", h=h)
    assert c("read", h=h, len=1)[0]["errno"] == EBADF
    assert (tmp_path / "in" / "new.txt").read_bytes() == b"01AB"


def test_folders_links_and_listings(folder, tmp_path: Path) -> None:
    c = folder()
    c.ok("mkdir", h=0, path="sub")
    assert c("mkdir", h=0, path="sub")[0]["errno"] == EEXIST
    if WINDOWS:  # links are never made (nor followed) on Windows
        assert c("symlink", h=0, target="a.txt", path="link")[0]["errno"] == EPERM
        plant_link(tmp_path / "in" / "a.txt", tmp_path / "in" / "link")
        assert c("readlink", h=0, path="a.txt")[0]["errno"] == EINVAL
    else:
        c.ok("symlink", h=0, target="a.txt", path="link")
        assert c.ok("readlink", h=0, path="link")[1] == b"a.txt"
        assert c.ok("pstat", h=0, path="link", follow=False)[0]["type"] == 7
        assert c.ok("pstat", h=0, path="link", follow=True)[0]["size"] == "5"
    assert c("open", h=0, path="link")[0]["errno"] in LINK_OPENED  # no follow
    c.ok("link", h=0, path="a.txt", h2=0, path2="hard.txt")
    for i in range(300):
        (tmp_path / "in" / "sub" / f"f{i:03}").write_text("x")
    d = c.ok("open", h=0, path="sub", directory=True)[0]["h"]
    names, cookie = [], 0
    while True:  # listed in parts, by cookie
        entries = c.ok("readdir", h=d, cookie=cookie, count=64)[0]["entries"]
        if not entries:
            break
        names += [e[0] for e in entries]
        cookie += len(entries)
    assert names[:2] == [".", ".."] and sorted(names[2:]) == [f"f{i:03}" for i in range(300)]
    assert c("rmdir", h=0, path="sub")[0]["errno"] == 55  # ENOTEMPTY
    c.ok("rename", h=0, path="a.txt", h2=d, path2="moved.txt")
    assert (tmp_path / "in" / "sub" / "moved.txt").read_text() == "hello"
    if not WINDOWS:  # under Wine the link opens as its target: refused (EPERM)
        c.ok("unlink", h=0, path="link")
    assert c("unlink", h=0, path="sub")[0]["errno"] == EISDIR
    assert c("unlink", h=0, path="hard.txt/")[0]["errno"] == ENOTDIR
    assert c("pstat", h=0, path="nothing")[0]["errno"] == ENOENT


def test_nothing_leads_out_and_read_only_means_read_only(folder, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("outside")
    plant_link(tmp_path, tmp_path / "in" / "out")
    plant_link(tmp_path / "secret", tmp_path / "in" / "abs")
    c = folder()
    for path in ("../secret", "out/secret", "abs", "/etc/passwd", "./../secret"):
        assert c("open", h=0, path=path, follow=True)[0]["errno"] == EPERM, path
        assert c("pstat", h=0, path=path, follow=True)[0]["errno"] in (EPERM, ENOENT), path
    assert c("symlink", h=0, target="/etc", path="evil")[0]["errno"] == EPERM
    assert c("rename", h=0, path="a.txt", h2=0, path2="../stolen")[0]["errno"] == EPERM
    if not WINDOWS:
        os.mkfifo(tmp_path / "in" / "fifo")
        assert c("open", h=0, path="fifo")[0]["errno"] == EACCES  # never blocks a bridge thread
    assert not (tmp_path / "stolen").exists()
    ro = folder("ro")
    for op, head in (("open", {"path": "a.txt", "write": True}),
                     ("open", {"path": "new", "creat": True}),
                     ("open", {"path": "a.txt", "trunc": True}), ("mkdir", {"path": "d"}),
                     ("unlink", {"path": "a.txt"}), ("symlink", {"target": "a", "path": "l"}),
                     ("rename", {"path": "a.txt", "h2": 0, "path2": "b"}),
                     ("link", {"path": "a.txt", "h2": 0, "path2": "b"}),
                     ("times", {"path": "a.txt", "mtimNow": True})):
        assert ro(op, h=0, **head)[0]["errno"] == EPERM, (op, head)
    h = ro.ok("open", h=0, path="a.txt", creat=True)[0]["h"]  # an existing file opens
    assert ro("write", b"x", h=h)[0]["errno"] == EBADF
    assert (tmp_path / "in" / "a.txt").read_text() == "hello"


def test_handles_and_sizes_are_bounded(folder, tmp_path: Path) -> None:
    (tmp_path / "in" / "big").write_bytes(b"x" * (2 * MAX_IO))
    c = folder()
    h = c.ok("open", h=0, path="big")[0]["h"]
    assert len(c.ok("read", h=h, len=1 << 40)[1]) == MAX_IO
    w = c.ok("open", h=0, path="big", write=True)[0]["h"]
    assert c("write", b"x" * (MAX_IO + 1), h=w)[0]["errno"] == EINVAL
    codes = [c("open", h=0, path="big")[0]["errno"] for _ in range(MAX_HANDLES + 3)]
    assert codes.count(EMFILE) >= 3 and codes.count(0) <= MAX_HANDLES
    page = HandleBudget(4)
    small = folder(budget=page)  # its root takes one of the 4
    assert page.used == 1
    assert [small("open", h=0, path="big")[0]["errno"] for _ in range(4)] == [0, 0, 0, EMFILE]
    for bad in (b"", b"\xff\xff\xff\xff", b"\x02\x00\x00\x00[]", encode({"op": "open"}),
                (30000).to_bytes(4, "little") + b"[" * 30000):  # deeper than json can go
        assert answer(c.folder.call(bad))[0]["errno"] != 0
    held = [h.fd for f in (c.folder, small.folder) for h in f._handles.values()]
    assert len(held) > MAX_HANDLES and still_open(held) == held
    c.folder.close()
    small.folder.close()
    assert still_open(held) == []  # every handle closed
    assert page.used == 0  # the root's too


@pytest.mark.skipif(not WINDOWS, reason="Windows-only: what these names mean is Windows' reading "
                    "(the text rules also run on Linux: test_winpath.py)")
def test_windows_path_tricks_are_refused(folder, tmp_path: Path) -> None:
    (tmp_path / "in" / "a-rather-long-file-name.txt").write_text("long")
    (tmp_path / "in" / "sub").mkdir()
    c = folder()
    for path in ("a.txt:hidden", "a.txt::$DATA", "CON", "nul", "con.txt", "COM1", "LPT1.log",
                 "a.txt.", "a.txt ", "C:\\Windows\\win.ini", "C:win.ini", "\\\\?\\C:\\x",
                 "\\\\server\\share\\x", "\\Windows", "..\\secret", "sub\\..\\..\\secret",
                 "sub/../../secret"):
        for op, head in (("open", {}), ("pstat", {}), ("open", {"creat": True, "write": True}),
                         ("mkdir", {}), ("unlink", {})):
            assert c(op, h=0, path=path, **head)[0]["errno"] == EPERM, (op, path)
    assert c("rename", h=0, path="a.txt", h2=0, path2="b.txt:stream")[0]["errno"] == EPERM
    assert sorted(os.listdir(tmp_path / "in")) == ["a-rather-long-file-name.txt", "a.txt", "sub"]
    import ctypes

    buf = ctypes.create_unicode_buffer(260)
    assert ctypes.WinDLL("kernel32").GetShortPathNameW(
        str(tmp_path / "in" / "a-rather-long-file-name.txt"), buf, 260)
    short = buf.value.rsplit("\\", 1)[-1]
    assert short.upper() != "A-RATHER-LONG-FILE-NAME.TXT" and "~" in short, short
    assert c("open", h=0, path=short)[0]["errno"] == EPERM  # an alias of another name
    assert c("unlink", h=0, path=short)[0]["errno"] == EPERM
    h = c.ok("open", h=0, path="A.TXT")[0]["h"]  # Windows matches names without case
    assert c.ok("read", h=h, len=10)[1] == b"hello"
    assert c.ok("read", h=h, len=10, at="1")[1] == b"ello"
    d = c.ok("open", h=0, path="sub\\.", directory=True)[0]["h"]  # either separator
    c.ok("open", h=0, path="sub\\..\\a.txt")  # `..` that stays beneath is fine
    assert c("open", h=d, path="..\\a.txt")[0]["errno"] == EPERM  # beneath `sub`, as on Linux


def test_roots_open_beneath_and_hold_their_folder(tmp_path: Path) -> None:
    """hostpath.Root, which opens services' and page modules' preopens (and these mounts)."""
    from wvwasi.runtime.host.hostpath import EscapeError

    (tmp_path / "in").mkdir()
    (tmp_path / "elsewhere").mkdir()
    plant_link(tmp_path / "elsewhere", tmp_path / "in" / "out")
    with Root.open(tmp_path / "in") as root:
        with root.subdir("a/b\\c", create=True) as made:
            assert Path(made.wasi_path()).resolve() == (tmp_path / "in" / "a" / "b" / "c")
        assert (tmp_path / "in" / "a" / "b" / "c").is_dir()
        for rel in ("out", "out/x", "../elsewhere", "a/../../elsewhere"):
            with pytest.raises(EscapeError):
                root.subdir(rel, create=True).close()
        assert not (tmp_path / "elsewhere" / "x").exists()
        if WINDOWS:  # the held root cannot be renamed away (and another folder put there)
            for rel in ("a:s", "CON", "a.", "C:\\x"):
                with pytest.raises(EscapeError):
                    root.subdir(rel, create=True).close()
            with pytest.raises(PermissionError):
                (tmp_path / "in").rename(tmp_path / "moved")
    (tmp_path / "in").rename(tmp_path / "moved")  # released


@pytest.mark.skipif(not under_wine(), reason="the swapping process is a Unix shell: Linux or Wine")
def test_a_link_swapped_in_while_calls_run_never_leads_out(folder, tmp_path: Path) -> None:
    """Another process flips `flip` between a folder inside and a link to one outside while the
    module opens and reads `flip/f`: each read is the inside file's or fails."""
    (tmp_path / "in" / "flip").mkdir()
    (tmp_path / "in" / "flip" / "f").write_text("inside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_text("outside")
    done = tmp_path / "done"
    c = folder()
    unix_shell(f"cd '{unix_path(tmp_path)}/in' && for i in $(seq 60); do mv flip .keep && "
               "ln -s ../outside flip && rm flip && mv .keep flip; done; touch ../done")
    seen: dict[bytes | int, int] = {}
    deadline = time.monotonic() + 120
    while not done.exists() and time.monotonic() < deadline:
        out = c("open", h=0, path="flip/f", follow=True)[0]
        if out["errno"] == 0:
            data = c.ok("read", h=out["h"], len=100)[1]
            c.ok("close", h=out["h"])
            seen[data] = seen.get(data, 0) + 1
        else:
            seen[out["errno"]] = seen.get(out["errno"], 0) + 1
    assert done.exists()
    assert b"outside" not in seen and seen.get(b"inside", 0) > 0, seen

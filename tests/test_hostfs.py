"""runtime/bridge/hostfs.py directly: the WASI file calls page-supplied modules make on a lent host
folder (the browser tests in test_page_hostfs.py go through the whole path; these cover every
call)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from wvwasi.runtime.bridge.hostfs import MAX_HANDLES, MAX_IO, HandleBudget, HostFolder, encode
from wvwasi.runtime.host.hostpath import Root

EPERM, EACCES, EBADF, EEXIST, EISDIR, ELOOP, EMFILE, ENOENT, ENOTDIR, EINVAL = (
    63, 2, 8, 20, 31, 32, 33, 44, 54, 28)


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
        made.append(HostFolder(Root.open(tmp_path / "in"), mode, budget))  # type: ignore[arg-type]
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
    c.ok("symlink", h=0, target="a.txt", path="link")
    assert c.ok("readlink", h=0, path="link")[1] == b"a.txt"
    assert c("open", h=0, path="link")[0]["errno"] == ELOOP  # no follow: the link itself
    assert c.ok("pstat", h=0, path="link", follow=False)[0]["type"] == 7
    assert c.ok("pstat", h=0, path="link", follow=True)[0]["size"] == "5"
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
    c.ok("unlink", h=0, path="link")
    assert c("unlink", h=0, path="sub")[0]["errno"] == EISDIR
    assert c("unlink", h=0, path="hard.txt/")[0]["errno"] == ENOTDIR
    assert c("pstat", h=0, path="nothing")[0]["errno"] == ENOENT


def test_nothing_leads_out_and_read_only_means_read_only(folder, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("outside")
    (tmp_path / "in" / "out").symlink_to(tmp_path)
    (tmp_path / "in" / "abs").symlink_to(tmp_path / "secret")
    os.mkfifo(tmp_path / "in" / "fifo")
    c = folder()
    for path in ("../secret", "out/secret", "abs", "/etc/passwd", "./../secret"):
        assert c("open", h=0, path=path, follow=True)[0]["errno"] == EPERM, path
        assert c("pstat", h=0, path=path, follow=True)[0]["errno"] in (EPERM, ENOENT), path
    assert c("symlink", h=0, target="/etc", path="evil")[0]["errno"] == EPERM
    assert c("rename", h=0, path="a.txt", h2=0, path2="../stolen")[0]["errno"] == EPERM
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
    fds = len(os.listdir("/proc/self/fd"))
    c.folder.close()
    small.folder.close()
    assert len(os.listdir("/proc/self/fd")) < fds - MAX_HANDLES  # every handle closed
    assert page.used == 0  # the root's too

"""runtime/host/winpath.py: the text rules for Windows path names (plain Python, so they run here;
what they mean on Windows is tried on Windows itself in test_hostfs.py)."""

from __future__ import annotations

import pytest

from wvwasi.runtime.host.hostpath import EscapeError
from wvwasi.runtime.host.winpath import name_problem, split

REFUSED = (
    "C:\\Windows", "C:/Windows", "c:win.ini", "\\Windows", "/etc", "\\\\?\\C:\\x",
    "\\\\.\\PhysicalDrive0", "\\\\server\\share", "//server/share", "..", "../x", "..\\x",
    "a\\..\\..\\x", "a/../../x", "a.txt:stream", "a.txt::$DATA", "CON", "con", "NUL",
    "nul.txt", "con.tar.gz", "COM1", "com9.log", "LPT1", "lpt\u00b9", "AUX", "PRN ", "prn .txt",
    "CONIN$", "a.txt.", "a.txt ", "dir./x", "a<b", "a>b", 'a"b', "a|b", "a?b", "a*b", "a\x01b",
)
ALLOWED = (
    "a.txt", "dir/sub/file", "dir\\sub\\file", "a/../b", "./a", "a//b", ".hidden", "con-tents",
    "console.txt", "COM10", "LPT", "nulled", "x.con", "a~1.txt", "PROGRA~1", "\u00e9t\u00e9",
)


@pytest.mark.parametrize("path", REFUSED)
def test_windows_tricks_are_refused_as_text(path: str) -> None:
    with pytest.raises(EscapeError):
        split(path)


@pytest.mark.parametrize("path", ALLOWED)
def test_plain_names_pass(path: str) -> None:
    names = split(path)
    assert names and all(name_problem(n) is None for n in names)


def test_names_are_split_on_either_separator_and_dots_applied() -> None:
    assert split("a\\b/./c") == ["a", "b", "c"]
    assert split("a/b/../c/.") == ["a", "c"]
    assert split(".") == split("") == []
    assert name_problem("con.txt") == "the device name CON"
    assert "stream" in (name_problem("a:b") or "")

"""The Unix side of a test, also from the Windows CPython under Wine: a path as Unix names it,
a Unix shell started beside the test (to plant or swap links as another process would), and a
symlink planted the way each system allows."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

WINDOWS = sys.platform == "win32"


def under_wine() -> bool:
    """True on Linux, and on Windows when it is Wine (which can start Unix programs)."""
    if not WINDOWS:
        return True
    import ctypes

    return hasattr(ctypes.WinDLL("kernel32"), "wine_get_unix_file_name")


def unix_path(path: Path) -> str:
    """`path` as the Unix side names it (under Wine: through wine_get_unix_file_name)."""
    if not WINDOWS:
        return str(path)
    import ctypes

    unix = ctypes.WinDLL("kernel32").wine_get_unix_file_name
    unix.restype = ctypes.c_char_p
    return os.fsdecode(unix(str(path)))


def unix_shell(script: str) -> None:
    """Start `sh -c script` as a Unix process beside this one (under Wine too)."""
    if not WINDOWS:
        import subprocess

        subprocess.Popen(["sh", "-c", script])
    else:
        os.spawnv(os.P_NOWAIT, "Z:\\bin\\sh", ["sh", "-c", f'"{script}"'])  # one argument


def plant_link(target: Path, link: Path) -> None:
    """A symlink `link` -> `target` made outside the runtime (as another process would): under
    Wine by the Unix `ln` (Wine 8.0 makes no Windows symlinks), on Windows by `mklink`."""
    if not WINDOWS:
        link.symlink_to(target)
        return
    import ctypes
    import subprocess

    if not hasattr(ctypes.WinDLL("kernel32"), "wine_get_unix_file_name"):
        # real Windows: a junction for a folder (no privilege needed), else a symlink
        subprocess.run(["cmd", "/c", "mklink", *(["/J"] if target.is_dir() else []), str(link),
                        str(target)], check=True, capture_output=True)
        return
    os.spawnv(os.P_NOWAIT, "Z:\\bin\\ln", ["ln", "-s", f'"{unix_path(target)}"',
                                          f'"{unix_path(link.parent)}/{link.name}"'])
    deadline = time.monotonic() + 10
    while not os.path.lexists(link) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.lexists(link), link

"""The Unix side of a test, also from the Windows CPython under Wine: a path as Unix names it,
and a Unix shell started beside the test (to plant or swap links as another process would)."""

from __future__ import annotations

import os
import sys
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

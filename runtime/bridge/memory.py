"""Large buffers go back to the system when freed, so a page's memory returns after it leaves.

glibc serves allocations of at least its mmap threshold with their own mappings, which `free`
unmaps; but the threshold rises to the size of each such block freed (up to 32 MiB), after which
buffers like a task's 15 MiB output or a 1 MiB frame come from the heap arenas and stay in the
process once freed (measured: +100 MiB per flooding page left behind, growing to +250 MiB over
four). `return_large_buffers()` fixes the threshold at glibc's own starting value, LARGE (setting
it stops the rise). A no-op where the C library has no `mallopt` (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: Allocations of at least this many bytes get their own mapping (glibc's default start).
LARGE = 128 << 10
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_large_buffers() -> bool:
    """Set the threshold (process-wide, idempotent); True where it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE))

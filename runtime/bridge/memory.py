"""Large buffers go back to the system when freed, so a page's memory returns after it leaves.

glibc gives allocations of at least its mmap threshold their own mapping, which `free` unmaps;
but the threshold rises to the size of each such block freed (up to 32 MiB), after which buffers
like a task's 15 MiB output come from the heap arenas and stay in the process once freed
(measured: +30 to +100 MiB per flooding page left behind, growing to +250 MiB after four;
`malloc_trim` returned none of it). `return_large_buffers()` fixes the threshold at LARGE
(setting it stops the rise). LARGE stays above the bridge's 1 MiB frames: a fresh mapping costs
a page fault per 4 KiB, so 15 MiB copies run 4-9 times slower than from the heap (1 MiB copies
are unchanged). bench/bench_mallopt.py measures this against the alternatives (`malloc_trim`
once a page left; big buffers from the heap with a 4 or 32 MiB trim threshold): each kept far
more memory after the page left (docs/security.md), so this stays. A no-op where the C library
has no `mallopt` (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: Allocations of at least this many bytes get their own mapping.
LARGE = 4 << 20
#: Free memory at the top of the heap kept rather than handed back (so frames reuse it).
KEEP = 4 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def return_large_buffers() -> bool:
    """Set the threshold (process-wide, idempotent); True where it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # fixing one threshold fixes the other too: keep freed heap tops up to KEEP for reuse
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP))

"""A WASI `poll_oneoff` that `terminate()` interrupts.

Epoch interruption stops wasm code, not a host call: a guest in `sleep(60)` (wasi-libc turns
`nanosleep` into `poll_oneoff` with one relative clock subscription) would ignore `terminate()`
for a minute. `shadow_poll_oneoff` replaces the import on a Linker: clock-only polls with
relative timeouts wait on the calling instance's stop event instead, and return `EINTR` when it
is set, so the instance reaches its next epoch check at once. Every other poll (file
descriptors, absolute or CPU-time clocks) goes to wasmtime's own implementation; those wake up
on their own when an instance is stopped (its stdin is closed and its output drained).
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import wasmtime

_MODULE = "wasi_snapshot_preview1"
# userdata, tag, clock id, timeout, precision, flags (wasi `subscription`, 48 bytes)
_SUBSCRIPTION = struct.Struct("<QB7xIxxxxQQH6x")
_EVENT = struct.Struct("<QHB5x16x")  # userdata, error, type (fd_readwrite left zero)
_TAG_CLOCK = 0
_ABSTIME = 1
_REALTIME, _MONOTONIC = 0, 1
_SUCCESS, _EFAULT, _EINTR, _EINVAL = 0, 21, 27, 28

#: The stop event of the instance running on this thread (host calls run on the caller's thread).
current = threading.local()


def set_current_stop(stop: threading.Event | None) -> None:
    """Declare `stop` as the event that interrupts this thread's sleeps (None: no instance)."""
    current.stop = stop


def shadow_poll_oneoff(linker: wasmtime.Linker, engine: wasmtime.Engine) -> None:
    """Replace `linker`'s WASI `poll_oneoff` (already defined) with the interruptible one."""
    wasi = wasmtime.Linker(engine)
    wasi.define_wasi()
    i32 = wasmtime.ValType.i32()
    ty = wasmtime.FuncType([i32, i32, i32, i32], [i32])

    def poll_oneoff(caller: wasmtime.Caller, subs: int, events: int, count: int, out: int) -> int:
        # Never raise here: wasmtime-py hands exceptions across threads through a global.
        try:
            memory = caller["memory"]
            if not isinstance(memory, wasmtime.Memory) or count == 0:
                return _EINVAL
            raw = memory.read(caller, subs, subs + count * _SUBSCRIPTION.size)
            clocks = [_SUBSCRIPTION.unpack_from(raw, i * _SUBSCRIPTION.size) for i in range(count)]
            stop: threading.Event | None = getattr(current, "stop", None)
            if stop is None or not all(_relative_clock(s) for s in clocks):
                original = wasi.get(caller, _MODULE, "poll_oneoff")
                assert isinstance(original, wasmtime.Func)
                return int(original(caller, subs, events, count, out))
            shortest = min(s[3] for s in clocks)
            if stop.wait(shortest / 1e9):
                return _EINTR
            fired = [s for s in clocks if s[3] == shortest]
            data = b"".join(_EVENT.pack(s[0], _SUCCESS, _TAG_CLOCK) for s in fired)
            memory.write(caller, data, events)
            memory.write(caller, struct.pack("<I", len(fired)), out)
            return _SUCCESS
        except Exception:
            return _EFAULT

    linker.allow_shadowing = True
    linker.define_func(_MODULE, "poll_oneoff", ty, poll_oneoff, access_caller=True)
    linker.allow_shadowing = False


def _relative_clock(sub: tuple[Any, ...]) -> bool:
    _userdata, tag, clock, _timeout, _precision, flags = sub
    return tag == _TAG_CLOCK and clock in (_REALTIME, _MONOTONIC) and not flags & _ABSTIME

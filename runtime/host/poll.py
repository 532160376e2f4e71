"""A WASI `poll_oneoff` that `terminate()` interrupts.

Epoch interruption stops wasm code, not a host call: a guest in `sleep(60)` (wasi-libc turns
`nanosleep` into `poll_oneoff` with one clock subscription) would ignore `terminate()` for a
minute. wasmtime's own `poll_oneoff` cannot be called from a host function (it needs the calling
instance's memory), so `shadow_poll_oneoff` replaces it with this one, which waits on the
calling instance's stop event and returns `EINTR` when it is set; the instance then stops at its
next epoch check.

What it reports: a realtime or monotonic clock fires after its timeout (relative, or absolute
against the guest's clock: wall time, or for the monotonic clock the time since its WASI
context was made, `Waker.epoch`); a read on fd 0 is ready once the stdin pipe holds bytes
(`nbytes`) or is closed (`hangup`), checked whenever the host writes stdin and at least every
POLL_INTERVAL (where the pipe cannot be
looked into, on Windows, it is ready at once); every other fd subscription is
ready at once, as regular files are (a write to a full stdout pipe then blocks in `fd_write`,
which terminate() also ends). CPU-time clocks are not supported (`ENOTSUP`), as in wasmtime.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import wasmtime

_MODULE = "wasi_snapshot_preview1"
# userdata, tag, clock id or fd, timeout, precision, flags (wasi `subscription`, 48 bytes)
_SUBSCRIPTION = struct.Struct("<QB7xIxxxxQQH6x")
_EVENT = struct.Struct("<QHB5xQH6x")  # userdata, error, type, nbytes, flags (32 bytes)
_CLOCK, _FD_READ = 0, 1
_ABSTIME = 1
_HANGUP = 1
_REALTIME, _MONOTONIC = 0, 1
_SUCCESS, _EFAULT, _EINTR, _EINVAL, _ENOTSUP = 0, 21, 27, 28, 58
#: How often a poll on stdin looks at the pipe again.
POLL_INTERVAL = 0.005


@dataclass(frozen=True)
class Waker:
    """What this thread's instance offers a poll: its stop event, its stdin's state
    `stdin() -> (bytes waiting in the pipe or None if unknown, closed)`, and the
    `time.monotonic()` just after its WASI context was made (the guest's monotonic 0), and
    `stdin_wait(seconds)`, which returns early when stdin is written, closed or stopped."""

    stop: threading.Event
    stdin: Callable[[], tuple[int | None, bool]]
    epoch: float
    stdin_wait: Callable[[float], None]


_current = threading.local()


def set_current(waker: Waker | None) -> None:
    """Declare the instance running on this thread (host calls run on the caller's thread)."""
    _current.waker = waker


def shadow_poll_oneoff(linker: wasmtime.Linker) -> None:
    """Replace `linker`'s WASI `poll_oneoff` (already defined) with the interruptible one."""
    i32 = wasmtime.ValType.i32()
    ty = wasmtime.FuncType([i32, i32, i32, i32], [i32])

    def poll_oneoff(caller: wasmtime.Caller, subs: int, events: int, count: int, out: int) -> int:
        # Never raise here: wasmtime-py hands exceptions across threads through a global.
        try:
            memory = caller["memory"]
            waker: Waker | None = getattr(_current, "waker", None)
            if not isinstance(memory, wasmtime.Memory) or count == 0 or waker is None:
                return _EINVAL
            raw = memory.read(caller, subs, subs + count * _SUBSCRIPTION.size)
            subscriptions = [
                _SUBSCRIPTION.unpack_from(raw, i * _SUBSCRIPTION.size) for i in range(count)
            ]
            deadlines: dict[int, float] = {}
            start = time.monotonic()
            for i, (_u, tag, clock, timeout, _p, flags) in enumerate(subscriptions):
                if tag != _CLOCK:
                    continue
                if clock not in (_REALTIME, _MONOTONIC):
                    return _ENOTSUP
                if flags & _ABSTIME:
                    now = time.time_ns() if clock == _REALTIME else (start - waker.epoch) * 1e9
                    timeout = max(0, timeout - now)
                deadlines[i] = start + timeout / 1e9
            while True:
                ready = _ready(subscriptions, deadlines, waker)
                if ready:
                    memory.write(caller, b"".join(ready), events)
                    memory.write(caller, struct.pack("<I", len(ready)), out)
                    return _SUCCESS
                wait = min(deadlines.values(), default=float("inf")) - time.monotonic()
                if len(deadlines) < count:  # an fd subscription: stdin, looked at again soon
                    waker.stdin_wait(max(0.0, min(wait, POLL_INTERVAL)))
                    if waker.stop.is_set():
                        return _EINTR
                elif waker.stop.wait(max(0.0, wait)):
                    return _EINTR
        except Exception:
            return _EFAULT

    linker.allow_shadowing = True
    linker.define_func(_MODULE, "poll_oneoff", ty, poll_oneoff, access_caller=True)
    linker.allow_shadowing = False


def _ready(
    subscriptions: list[tuple[int, ...]], deadlines: dict[int, float], waker: Waker
) -> list[bytes]:
    """The events of every subscription that is ready now."""
    now = time.monotonic()
    out = []
    for i, (userdata, tag, fd, _t, _p, _f) in enumerate(subscriptions):
        if tag == _CLOCK:
            if deadlines[i] <= now:
                out.append(_EVENT.pack(userdata, _SUCCESS, tag, 0, 0))
        elif tag == _FD_READ and fd == 0:
            waiting, closed = waker.stdin()
            if waiting is None or waiting or closed:
                flags = _HANGUP if closed else 0
                out.append(_EVENT.pack(userdata, _SUCCESS, tag, waiting or 0, flags))
        else:
            out.append(_EVENT.pack(userdata, _SUCCESS, tag, 0, 0))
    return out


"""The one raw wasmtime C-API binding wasmtime-py does not wrap: a per-store epoch callback.

With `Config.epoch_interruption`, every engine epoch tick calls `should_stop()` in each running
store; a non-None answer traps that store alone with that message, so one Engine can serve many
instances that are stopped individually.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import wasmtime
from wasmtime import _ffi as ffi

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_CONTINUE = 0


def set_epoch_callback(store: wasmtime.Store, should_stop: Callable[[], str | None]) -> object:
    """Install `should_stop` as `store`'s epoch-deadline callback (checked every tick).

    Returns the ctypes callback object: keep a reference for as long as the store lives.
    `should_stop` must never raise: it runs inside wasm, on the instance's thread.
    """

    def callback(_ctx, _data, delta, kind):  # type: ignore[no-untyped-def]
        reason = should_stop()
        if reason is not None:
            err = ffi.wasmtime_error_new(ctypes.create_string_buffer(reason.encode()))
            return ctypes.cast(err, ctypes.c_void_p).value
        delta[0] = 1
        kind[0] = _CONTINUE
        return 0

    c_callback = _CALLBACK(callback)
    ffi.wasmtime_store_epoch_deadline_callback(
        store.ptr(), c_callback, None, ctypes.cast(None, _FINALIZER)
    )
    store.set_epoch_deadline(1)
    return c_callback

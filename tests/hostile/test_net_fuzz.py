"""A hostile guest calling `wvwasi_net` with arbitrary arguments: random, boundary and
out-of-memory pointers, lengths, handles, ports and timeouts, thousands of calls in one run.

Every call returns a count or a negative WASI errno; the instance exits normally, the host keeps
serving, nothing is connected that the allow-list does not name, and no socket stays open."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hostile_project import wat

from wvwasi.runtime.manifest import load_manifest

#: Arguments a hostile guest would try: edges of i32 and of a one-page memory.
EDGES = [0, 1, 2, 3, 7, 253, 254, 4095, 65535, 65536, 65537, 0x7FFFFFFF, -1, -2, -0x80000000,
         60000, 1 << 20, (1 << 20) + 1]
SIGNATURES = {"connect": 4, "send": 3, "recv": 4, "close": 1, "error": 2}


def _module(calls: list[tuple[str, list[int]]]) -> str:
    """A command module with one page of memory that makes `calls` and checks every result is a
    count or a negative errno above -100 (else it traps: a host that answered nonsense)."""
    imports = "\n".join(
        f'  (import "wvwasi_net" "{name}" (func ${name} (param {" i32" * n}) (result i32)))'
        for name, n in SIGNATURES.items())
    body = []
    for name, args in calls:
        consts = " ".join(f"(i32.const {a})" for a in args)
        body.append(f"    (call $check (call ${name} {consts}))")
    return f"""(module
{imports}
  (memory (export "memory") 1 1)
  (data (i32.const 0) "127.0.0.1")
  (func $check (param i32)
    (if (i32.lt_s (local.get 0) (i32.const -100)) (then unreachable)))
  (func (export "_start")
{chr(10).join(body)}))"""


def test_random_arguments_never_hurt_the_host(
    tmp_path: Path, make_project: Callable[..., Path], make_host: Callable[..., Any]
) -> None:
    rng = random.Random(20261207)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    stop = threading.Event()
    accepted = []

    def accept() -> None:  # take every connection, so a full backlog never slows a connect
        while not stop.is_set():
            with contextlib.suppress(OSError):
                listener.accept()[0].close()
                accepted.append(1)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    calls: list[tuple[str, list[int]]] = []
    for _ in range(3000):
        name = rng.choice(list(SIGNATURES))
        args = [rng.choice(EDGES) if rng.random() < 0.7 else rng.randrange(-(1 << 31), 1 << 31)
                for _ in range(SIGNATURES[name])]
        if name == "connect" and rng.random() < 0.3:
            args = [0, 9, port, rng.choice([0, 1])]  # the listed target, now and then
        if name == "recv":
            args[3] = rng.choice([0, 1, -5, 0x7FFFFFFF])  # never wait long
        calls.append((name, args))
    (tmp_path / "fuzz.wasm").write_bytes(wat(_module(calls)))
    project = make_project({"f": {"source": tmp_path / "fuzz.wasm", "net": {
        "connect": [f"127.0.0.1:{port}"], "sockets": 4, "read_timeout": "50ms",
        "connect_timeout": "1s"}}})
    host = make_host(load_manifest(project)).start()
    try:
        result = host.run_task("f")
        assert result.error is None and result.exit_code == 0, result
        assert accepted  # the fuzz reached real sockets, not only refusals
        assert host.sockets._open == 0  # every socket it opened was closed with the instance
        assert host.run_task("f").exit_code == 0  # and the host still serves the next one
    finally:
        stop.set()
        acceptor.join()
        listener.close()

"""Both ways a service's output reaches the host (runtime/host/stdio.py): FIFOs drained by reader
threads (the POSIX default) and wasmtime's output callbacks (what Windows uses; forced here with
WVWASI_STDIO=callback). stdin is a pipe in both."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hostutil import drain, next_message

from wvwasi.runtime.host import stdio
from wvwasi.runtime.host.service_host import ServiceHost
from wvwasi.runtime.manifest import manifest_for_wasm

#: POSIX only: FIFOs do not exist on Windows, which always uses the output callbacks.
FIFO = pytest.param("fifo", marks=pytest.mark.skipif(
    sys.platform == "win32", reason="Linux-only: output through FIFOs (POSIX); Windows uses "
    "wasmtime's output callbacks"))


@pytest.fixture(params=[FIFO, "callback"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WVWASI_STDIO", request.param)
    assert stdio.output_mode() == request.param
    return request.param


def host_for(wasm: Path, **kwargs: object) -> tuple[ServiceHost, str]:
    """A started host for a bare .wasm, and the name of its one service."""
    manifest = manifest_for_wasm(wasm, **kwargs)  # type: ignore[arg-type]
    return ServiceHost(manifest).start(), next(iter(manifest.services))


def test_messages_round_trip_in_order(mode: str, wasm_fixture: Callable[[str], Path]) -> None:
    host, name = host_for(wasm_fixture("echo_frames"), ipc="frames", kind="dedicated")
    with host:
        inst = host.spawn(name)
        payloads = [bytes([i % 256]) * (i * 97 % 5000) for i in range(500)]
        for p in payloads:
            inst.send(p)
        assert [next_message(inst) for _ in payloads] == payloads
        inst.close_stdin()
        assert inst.wait(30).code == 0


def test_flood_and_stderr_arrive_complete(mode: str, wasm_fixture: Callable[[str], Path]) -> None:
    host, name = host_for(wasm_fixture("flood"), args=("16",))
    with host:
        result = host.run_task(name)
    assert result.exit_code == 0
    assert len(result.stdout) == 16 << 20
    assert result.stdout[:502] == bytes(i % 251 for i in range(502))
    assert result.stdout[-251:] == bytes(i % 251 for i in range((16 << 20) - 251, 16 << 20))
    host, name = host_for(wasm_fixture("stderr_lines"), args=("50",), kind="dedicated")
    with host:
        outcome = drain(host.spawn(name))
    assert outcome.stderr == [f"line {i}" for i in range(1, 51)]
    assert outcome.exited.code == 0


@pytest.mark.skipif(sys.platform == "win32", reason="runs the `wvwasi` command line, which the "
                    "Windows CPython of test_windows_pytest.py does not have (only the runtime)")
def test_exec_exits_with_the_service_code_while_stdin_is_open(
    mode: str, wasm_fixture: Callable[[str], Path]
) -> None:
    """The interpreter exits right after the service: no abort, no panic from wasmtime threads."""
    proc = subprocess.run(
        [sys.executable, "-m", "wvwasi", "exec", str(wasm_fixture("exit3"))],
        stdin=subprocess.PIPE, capture_output=True, timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert b"panic" not in proc.stderr

"""Messages through the service host in each ipc mode: lines, frames, stream."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import pytest
from hostutil import Outcome, drain, next_message

from wvwasi.runtime.host.framing import FramingError
from wvwasi.runtime.host.service_host import SpawnOptions
from wvwasi.runtime.manifest import load_manifest

SERVICES: dict[str, dict[str, Any]] = {
    "lines": {"source": "echo_lines", "kind": "dedicated", "ipc": "lines"},
    "frames": {"source": "echo_frames", "kind": "dedicated", "ipc": "frames"},
    "stream": {"source": "echo_stream", "kind": "dedicated", "ipc": "stream"},
    "flood": {"source": "flood", "kind": "dedicated", "ipc": "stream"},
}


@pytest.fixture
def host(make_project: Callable[..., Any], make_host: Callable[..., Any]) -> Any:
    return make_host(load_manifest(make_project(SERVICES))).start()


def test_lines_round_trip_utf8(host: Any) -> None:
    inst = host.spawn("lines")
    sent = ["hello", "", "héllo wörld ✓ 日本語 🎉", "tab\tand \r carriage", "x" * 200_000]
    for line in sent:
        inst.send(line)
    assert [next_message(inst) for _ in sent] == sent
    inst.close_stdin()
    out = drain(inst)
    assert out.messages == [] and out.exited is not None and out.exited.code == 0


def test_lines_mode_rejects_bytes_and_newlines(host: Any) -> None:
    inst = host.spawn("lines")
    with pytest.raises(FramingError):
        inst.send(b"bytes")
    with pytest.raises(FramingError, match="newline"):
        inst.send("two\nlines")
    inst.send("still fine")
    assert next_message(inst) == "still fine"


def test_lines_split_across_writes_arrive_whole(host: Any) -> None:
    inst = host.spawn("lines")
    inst.write_stdin(b"first half ")
    inst.write_stdin("and second ✓\nnext".encode())
    inst.write_stdin(b" line\n")
    assert next_message(inst) == "first half and second ✓"
    assert next_message(inst) == "next line"


def test_frames_round_trip_binary(host: Any) -> None:
    inst = host.spawn("frames")
    sent = [bytes(range(256)), b"", b"\n\r\0", os.urandom(1 << 20), bytes(range(256))[::-1]]
    for frame in sent:
        inst.send(frame)
    got = [next_message(inst) for _ in sent]
    assert [len(g) for g in got] == [len(s) for s in sent]
    assert got == sent
    with pytest.raises(FramingError):
        inst.send("text is not a frame")


def test_stream_round_trip_every_byte(host: Any) -> None:
    inst = host.spawn("stream")
    data = bytes(range(256)) * 4096 + os.urandom(12345)
    inst.send(data)
    inst.close_stdin()
    out = drain(inst)
    assert all(isinstance(m, bytes) for m in out.messages)
    assert b"".join(out.messages) == data
    assert out.exited is not None and out.exited.code == 0


@pytest.mark.parametrize(("service", "make"), [("lines", str), ("frames", str.encode)])
def test_ten_thousand_pipelined_messages_keep_order(
    host: Any, service: str, make: Callable[[str], Any]
) -> None:
    inst = host.spawn(service)
    sent = [make(f"message {i} " + "." * (i % 50)) for i in range(10_000)]
    for message in sent:
        inst.send(message)
    inst.close_stdin()
    out: Outcome = drain(inst)
    assert len(out.messages) == len(sent)
    assert out.messages == sent


def test_stdout_flood_arrives_complete(host: Any) -> None:
    mib = 64
    inst = host.spawn("flood", SpawnOptions(args=(str(mib),)))
    digest, size = hashlib.sha256(), 0
    out = drain(inst)
    for chunk in out.messages:
        digest.update(chunk)
        size += len(chunk)
    assert out.exited is not None and out.exited.code == 0, out.exited
    assert size == mib << 20
    block = bytes(i % 251 for i in range(251 * 1024))
    expected = hashlib.sha256()
    for _ in range((mib << 20) // len(block)):
        expected.update(block)
    expected.update(block[: (mib << 20) % len(block)])
    assert digest.hexdigest() == expected.hexdigest()



def test_messages_past_the_pipe_and_small_ones_keep_order(host: Any) -> None:
    """Small writes go straight into the stdin pipe, the rest through the writer thread: a
    message that only partly fits must still come before everything sent after it."""
    inst = host.spawn("frames")
    sent = []
    for i in range(12):
        big = bytes([i]) * ((3 << 20) + i) if i % 3 == 1 else None
        sent.append(big if big is not None else f"small {i}".encode())
    for message in sent:
        inst.send(message)  # nothing is read back meanwhile: the pipes fill up
    inst.close_stdin()
    out: Outcome = drain(inst)
    assert [len(m) for m in out.messages] == [len(m) for m in sent]
    assert out.messages == sent


def test_input_a_service_does_not_read_never_blocks_try_write_stdin(
    make_project: Callable[..., Any], make_host: Callable[..., Any]
) -> None:
    """`try_write_stdin` (what the bridge's event loop uses) refuses instead of waiting once
    16 MiB of input are queued for a service that does not read its stdin; nothing of it is
    written."""
    host = make_host(load_manifest(make_project({
        # `stream`: its "spinning\n" is no valid frame, which would end it ("output" error)
        "stuck": {"source": "loop", "kind": "dedicated", "ipc": "stream"},
    }))).start()
    inst = host.spawn("stuck")
    chunk = b"x" * (4 << 20)
    results = [inst.try_write_stdin(chunk) for _ in range(8)]
    # at most the pipe's share is written; 16 MiB may wait (the last one taken goes over)
    assert results == [True] * 5 + [False] * 3
    inst.terminate()
    assert inst.wait(30) is not None

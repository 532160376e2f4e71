"""Service kinds: tasks (run_task), dedicated instances, background services with subscribers."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest
from hostutil import WAIT, EventLog, drain, is_exit, is_message, next_message

from wvwasi.runtime.host.events import Exited, Message, Stderr
from wvwasi.runtime.host.service_host import SpawnOptions
from wvwasi.runtime.manifest import load_manifest

SERVICES: dict[str, dict[str, Any]] = {
    "wc": {"source": "wc"},
    "stderr_lines": {"source": "stderr_lines"},
    "control": {"source": "control", "kind": "dedicated", "env": {"ROLE": "manifest"}},
    "store": {"source": "control", "kind": "background"},
    "chatty": {"source": "stderr_lines", "kind": "dedicated", "args": ["5"]},
    "spin": {"source": "loop", "kind": "dedicated"},
}


@pytest.fixture
def host(make_project: Callable[..., Any], make_host: Callable[..., Any]) -> Any:
    return make_host(load_manifest(make_project(SERVICES))).start()


def test_task_collects_stdout_stderr_and_exit_code(host: Any) -> None:
    result = host.run_task("wc", stdin=b"hello world\nthe quick fox\n")
    assert (result.exit_code, result.stdout, result.stderr, result.error) == (
        0, b"2 5 26\n", b"", None,
    )
    result = host.run_task("stderr_lines", options=SpawnOptions(args=("3",)))
    assert result.stdout == b"done\n"
    assert result.stderr == b"line 1\nline 2\nline 3\n"


def test_task_with_large_stdin(host: Any) -> None:
    data = b"word " * (1 << 20) + b"\n"  # 5 MiB + 1
    result = host.run_task("wc", stdin=data)
    assert result.stdout == f"1 {1 << 20} {len(data)}\n".encode()


def test_task_without_stdin_sees_eof(host: Any) -> None:
    assert host.run_task("wc").stdout == b"0 0 0\n"


def test_dedicated_instances_are_independent(host: Any) -> None:
    a = host.spawn("control", SpawnOptions(env=(("WHO", "a"),)))
    b = host.spawn("control", SpawnOptions(env=(("WHO", "b"),)))
    assert next_message(a) == next_message(b) == "ready"
    a.send("env WHO")
    b.send("env WHO")
    assert (next_message(a), next_message(b)) == ("a", "b")
    a.send("env ROLE")
    assert next_message(a) == "manifest"
    a.send("only for a")
    assert next_message(a) == "only for a"
    a.send("exit 7")
    assert drain(a).exited == Exited(7)
    b.send("b lives on")
    assert next_message(b) == "b lives on"
    assert b.alive and not a.alive


def test_stderr_lines_arrive_as_events(host: Any) -> None:
    out = drain(host.spawn("chatty"))
    assert out.stderr == [f"line {i}" for i in range(1, 6)]
    assert out.messages == ["done"]
    assert out.exited == Exited(0)
    inst = host.spawn("control")
    inst.send("err something went wrong ✗")
    inst.send("after")
    events = []
    while len(events) < 3:
        events.append(inst.recv(WAIT))
    assert Stderr("something went wrong ✗") in events
    assert Message("after") in events


def test_background_service_is_shared_by_subscribers(host: Any) -> None:
    one, two = EventLog(), EventLog()
    sub1, sub2 = host.subscribe("store", one), host.subscribe("store", two)
    sub1.send("hello from one")  # queued until the shared instance has started
    one.wait_for(is_message("hello from one"))
    two.wait_for(is_message("hello from one"))
    sub2.send("hello from two")
    one.wait_for(is_message("hello from two"))
    two.wait_for(is_message("hello from two"))
    sub2.close()
    sub1.send("only one listens")
    one.wait_for(is_message("only one listens"))
    assert not any(is_message("only one listens")(e) for e in two.events)


def test_background_service_restarts_after_a_trap(host: Any) -> None:
    log = EventLog()
    sub = host.subscribe("store", log)
    sub.send("before")
    log.wait_for(is_message("before"))
    sub.send("trap")
    crashed = log.wait_for(is_exit("trap"))
    sub.send("after restart")  # sent while the service is down: delivered once it is back
    ready = log.wait_for(is_message("ready"), start=crashed + 1)  # a new instance started
    log.wait_for(is_message("after restart"), start=ready + 1)


def test_subscribe_needs_a_background_service(host: Any) -> None:
    with pytest.raises(ValueError, match="background"):
        host.subscribe("control", EventLog())


def test_restart_reloads_the_module(host: Any) -> None:
    old = host.spawn("control")
    assert next_message(old) == "ready"
    shutil.copyfile(host.manifest.root / "services" / "chatty.wasm", host.service("control").source)
    host.restart("control")
    exited = old.wait(WAIT)
    assert exited is not None and exited.error is not None
    assert exited.error.kind == "terminated"
    assert drain(host.spawn("control")).stderr[0] == "line 1"  # now runs the new module


def test_close_stops_every_instance(host: Any) -> None:
    spinning, blocked = host.spawn("spin"), host.spawn("control")
    assert next_message(spinning) == "spinning" and next_message(blocked) == "ready"
    host.close()
    for inst in (blocked, spinning):
        exited = inst.wait(5)
        assert exited is not None and exited.error is not None, inst.service.name
        assert exited.error.kind == "terminated"

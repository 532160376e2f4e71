"""How instances end: traps, exit codes, timeouts, terminate(), memory and instance limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hostutil import WAIT, drain, next_message

from wvwasi.runtime.host.events import ServiceLimitError
from wvwasi.runtime.manifest import load_manifest

SERVICES: dict[str, dict[str, Any]] = {
    "trap": {"source": "trap"},
    "exit3": {"source": "exit3"},
    "timeout": {"source": "loop", "limits": {"timeout": "300ms"}},
    "spin": {"source": "loop", "kind": "dedicated"},
    "block": {"source": "blockread", "kind": "dedicated"},
    "bomb": {"source": "membomb", "limits": {"memory": "32MiB"}},
    "echo": {"source": "echo_lines", "kind": "dedicated"},
    "pair": {"source": "blockread", "kind": "dedicated", "limits": {"instances": 2}},
}


@pytest.fixture
def host(make_project: Callable[..., Any], make_host: Callable[..., Any]) -> Any:
    return make_host(load_manifest(make_project(SERVICES))).start()


def assert_echoes(inst: Any, text: str = "still alive") -> None:
    inst.send(text)
    assert next_message(inst) == text


def test_trap_is_reported_with_its_cause(host: Any) -> None:
    result = host.run_task("trap")
    assert result.exit_code is None
    assert result.error is not None and result.error.kind == "trap"
    assert "'trap'" in result.error.message
    assert "unreachable" in result.error.message
    assert "backtrace" not in result.error.message


def test_exit_code_is_passed_through(host: Any) -> None:
    result = host.run_task("exit3")
    assert result.exit_code == 3
    assert result.stdout == b"exiting with 3\n"


def test_task_timeout(host: Any) -> None:
    result = host.run_task("timeout")
    assert result.error is not None and result.error.kind == "timeout", result
    assert "limits.timeout" in result.error.message
    assert result.stdout == b"spinning\n"


def test_terminate_stops_a_spinning_instance(host: Any) -> None:
    inst = host.spawn("spin")
    assert next_message(inst) == "spinning"
    inst.terminate()
    exited = inst.wait(timeout=5)
    assert exited is not None, "terminate() did not stop a spinning instance"
    assert exited.code is None
    assert exited.error is not None and exited.error.kind == "terminated"
    assert drain(inst).exited == exited


def test_terminate_stops_an_instance_blocked_on_stdin(host: Any) -> None:
    inst = host.spawn("block")
    assert next_message(inst) == "waiting"
    inst.terminate()
    exited = inst.wait(timeout=5)
    assert exited is not None, "terminate() did not stop an instance blocked reading stdin"
    assert exited.error is not None and exited.error.kind == "terminated"


def test_memory_limit_ends_only_the_greedy_instance(host: Any) -> None:
    bystander = host.spawn("echo")
    assert_echoes(bystander, "before")
    result = host.run_task("bomb")
    assert result.error is not None, result
    assert result.error.kind == "memory" or "limits.memory" in result.error.message, result.error
    assert "32 MiB" in result.error.message or "32MiB" in result.error.message
    reached = int(result.stderr.split()[-2])  # "malloc failed after N MiB"
    assert 16 <= reached < 32
    assert_echoes(bystander, "after")  # a live instance is untouched
    fresh = host.spawn("echo")  # and the host still starts new ones
    assert_echoes(fresh)


def test_instance_limit(host: Any) -> None:
    first, second = host.spawn("pair"), host.spawn("pair")
    with pytest.raises(ServiceLimitError, match=r"limits\.instances"):
        host.spawn("pair")
    assert isinstance(ServiceLimitError("x"), RuntimeError)
    first.close_stdin()  # blockread exits at end of input: a slot frees up
    assert first.wait(WAIT) is not None
    third = host.spawn("pair")
    assert next_message(third) == "waiting"
    assert second.alive and third.alive

"""Hostile services against the host's bounds: output without newlines, huge frames, stderr
floods, an app that never reads its events, too many instances, temp folders of killed runs,
and a close() that must leave nothing behind (docs/security.md, "Host resources")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostutil import WAIT, drain, next_message

from wvwasi.runtime.host.events import Message, ServiceLimitError, Stderr
from wvwasi.runtime.host.instance import STDERR_LINE
from wvwasi.runtime.host.tempdirs import PREFIX, sweep
from wvwasi.runtime.manifest import (
    DEFAULT_HOST_INSTANCES,
    DEFAULT_MESSAGE_LIMIT,
    ManifestError,
    load_manifest,
)

#: RSS a flood may add to the test process (the unbounded host grew by ~1 GB in 40 s).
RSS_BOUND = 64 << 20
FLOOD_SECONDS = 3.0

SERVICES: dict[str, dict[str, Any]] = {
    "nonl": {"source": "nonl_flood", "kind": "dedicated"},
    "nonl_small": {"source": "nonl_flood", "kind": "dedicated", "limits": {"message": "1MiB"}},
    "nonl_frames": {"source": "nonl_flood", "kind": "dedicated", "ipc": "frames"},
    "nonl_task": {"source": "nonl_flood", "ipc": "stream"},
    "nonl_err": {"source": "nonl_flood", "kind": "dedicated", "args": ["err"]},
    "errflood": {"source": "stderr_flood", "kind": "dedicated"},
    "flood": {"source": "flood", "kind": "dedicated", "ipc": "stream", "args": ["100000"]},
    "block": {"source": "blockread", "kind": "dedicated"},
    "sleeper": {"source": "sleeper", "kind": "dedicated", "args": ["sleep", "60"]},
    "bg": {"source": "echo_lines", "kind": "background"},
}


def rss() -> int:
    """This process's resident memory in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Path:
    return make_project(SERVICES, extra={"limits": {"instances": 8}})


@pytest.fixture
def host(project: Path, make_host: Callable[..., Any]) -> Any:
    return make_host(load_manifest(project)).start()


def test_a_line_without_newline_ends_the_instance_at_limits_message(host: Any) -> None:
    before = rss()
    out = drain(host.spawn("nonl"))
    assert out.messages == []
    error = out.exited.error if out.exited else None
    assert error is not None and error.kind == "output", out.exited
    assert f"more than {DEFAULT_MESSAGE_LIMIT} bytes" in error.message
    assert "limits.message" in error.message and "'nonl'" in error.message
    assert rss() - before < RSS_BOUND


def test_limits_message_is_read_from_the_manifest(host: Any) -> None:
    error = drain(host.spawn("nonl_small")).exited.error  # type: ignore[union-attr]
    assert error is not None and error.kind == "output"
    assert f"more than {1 << 20} bytes" in error.message


def test_a_frame_header_over_the_limit_ends_the_instance_before_buffering(host: Any) -> None:
    # 'xxxx' read as a u32 length is 2 021 161 080 bytes.
    error = drain(host.spawn("nonl_frames")).exited.error  # type: ignore[union-attr]
    assert error is not None and error.kind == "output"
    assert "frame of 2021161080 bytes" in error.message


def test_a_task_stdout_is_capped_too(host: Any) -> None:
    before = rss()
    result = host.run_task("nonl_task")
    assert result.error is not None and result.error.kind == "output", result.error
    assert len(result.stdout) <= DEFAULT_MESSAGE_LIMIT
    assert rss() - before < RSS_BOUND + DEFAULT_MESSAGE_LIMIT


def test_stderr_without_newline_is_cut_into_bounded_lines(host: Any) -> None:
    inst = host.spawn("nonl_err")
    assert next_message(inst) == "flooding"
    before, lines, end = rss(), 0, time.monotonic() + FLOOD_SECONDS
    while time.monotonic() < end:
        event = inst.recv(WAIT)
        assert isinstance(event, Stderr), event
        assert 0 < len(event.text) <= STDERR_LINE
        lines += 1
    assert lines > 10, "the flooder wrote almost nothing"
    assert rss() - before < RSS_BOUND
    inst.terminate()
    exited = inst.wait(WAIT)
    assert exited is not None and exited.error is not None and exited.error.kind == "terminated"


@pytest.mark.parametrize("service", ["errflood", "flood"])
def test_unread_events_pause_the_service_instead_of_growing(host: Any, service: str) -> None:
    """spawn() without on_event: a flooder whose events nobody reads holds bounded memory."""
    inst = host.spawn(service)
    first = inst.recv(WAIT)
    assert isinstance(first, (Message, Stderr))
    before = rss()
    time.sleep(FLOOD_SECONDS)  # the app reads nothing meanwhile
    assert rss() - before < RSS_BOUND
    assert inst.alive, "the flooder should be paused, not ended"
    more = [inst.recv(WAIT) for _ in range(100)]  # reading resumes it
    assert all(isinstance(e, (Message, Stderr)) for e in more)
    inst.terminate()
    assert inst.wait(WAIT) is not None


def test_host_wide_instance_limit(host: Any) -> None:
    live = [host.spawn("block") for _ in range(7)]  # + the background instance = 8
    with pytest.raises(ServiceLimitError, match=r"\[limits\] instances"):
        host.spawn("block")
    live[0].terminate()
    assert live[0].wait(WAIT) is not None
    host.spawn("block").terminate()  # a slot is free again


def test_a_flood_does_not_leak_threads_or_fds(host: Any) -> None:
    def floods() -> None:
        drain(host.spawn("nonl"))
        inst = host.spawn("errflood")
        assert next_message(inst) == "flooding"
        inst.terminate()
        drain(inst)

    floods()  # warm up: modules compiled, wasmtime's lazily made threads and fds exist
    threads, fds = threading.active_count(), open_fds()
    for _ in range(5):
        floods()
    assert threading.active_count() <= threads
    assert open_fds() <= fds


def _our_temp_folders() -> set[Path]:
    """Every wvwasi temp folder and lock file."""
    return set(Path(tempfile.gettempdir()).glob(f"{PREFIX}*"))


def test_close_leaves_no_thread_and_no_temp_folder(
    project: Path, make_host: Callable[..., Any]
) -> None:
    threads_before = set(threading.enumerate())
    folders_before = _our_temp_folders()
    host = make_host(load_manifest(project)).start()
    sleeping = host.spawn("sleeper")
    assert next_message(sleeping) == "sleeping"
    blocked = host.spawn("block")
    assert next_message(blocked) == "waiting"
    unread = host.spawn("errflood")  # its queue fills up; nobody reads it
    got: list[Any] = []
    sub = host.subscribe("bg", got.append)
    sub.send("hello")
    assert len(_our_temp_folders() - folders_before) == 2  # the host's folder and its lock
    started = time.monotonic()
    host.close()
    took = time.monotonic() - started
    assert set(threading.enumerate()) <= threads_before, threading.enumerate()
    assert _our_temp_folders() <= folders_before
    assert took < 5.0, f"close() took {took:.2f} s"
    for inst in (sleeping, blocked, unread):
        assert not inst.alive


_KILLED_APP = textwrap.dedent("""
    import sys, time
    from wvwasi.runtime.host.service_host import ServiceHost
    from wvwasi.runtime.manifest import load_manifest
    host = ServiceHost(load_manifest(sys.argv[1])).start()
    inst = host.spawn("block")
    assert inst.recv(60).data == "waiting"
    print(host._temp.path, host.paths.variable("TEMP"), flush=True)
    time.sleep(600)
""")


def test_temp_folders_of_a_killed_app_are_swept_at_next_start(
    project: Path, make_host: Callable[..., Any], tmp_path: Path
) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    apps = [
        subprocess.Popen([sys.executable, "-c", _KILLED_APP, str(project)], env=env,
                         stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        killed, alive = ([Path(p) for p in app.stdout.readline().split()] for app in apps)  # type: ignore[union-attr]
        assert any(p.is_fifo() for p in killed[0].rglob("*")), "expected the instance's FIFOs"
        apps[0].send_signal(signal.SIGKILL)
        apps[0].wait(WAIT)
        assert all(p.is_dir() for p in killed)  # a killed process cleans nothing up
        make_host(load_manifest(project)).start()
        for folder in killed:  # the host's folder and the app's $TEMP
            assert not folder.exists(), f"the killed app's {folder} was not swept"
            assert not Path(f"{folder}.lock").exists()
        assert all(p.is_dir() for p in alive), "the sweep removed a live app's folder"
    finally:
        for app in apps:
            app.kill()
            app.wait(WAIT)
        sweep()  # the second app's folder, now abandoned too


@pytest.mark.parametrize(
    ("extra", "services", "key"),
    [
        ({"limits": {"instances": 0}}, {}, "limits.instances"),
        ({"limits": {"threads": 4}}, {}, "limits.threads"),
        ({}, {"limits": {"message": "lots"}}, "services.nonl.limits.message"),
        ({}, {"limits": {"message": 0}}, "services.nonl.limits.message"),
    ],
)
def test_bad_bounds_in_the_manifest_name_their_key(
    make_project: Callable[..., Path], extra: dict[str, Any], services: dict[str, Any], key: str
) -> None:
    project = make_project({"nonl": {"source": "nonl_flood", **services}}, extra=extra)
    with pytest.raises(ManifestError) as caught:
        load_manifest(project)
    assert caught.value.key == key, str(caught.value)


_FD_LIMITED_APP = textwrap.dedent("""
    import resource, sys
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    from wvwasi.runtime.host.events import ServiceLimitError
    from wvwasi.runtime.host.service_host import ServiceHost
    from wvwasi.runtime.manifest import DEFAULT_HOST_INSTANCES, load_manifest
    manifest = load_manifest(sys.argv[1])
    with ServiceHost(manifest) as host:
        insts = [host.spawn("block") for _ in range(DEFAULT_HOST_INSTANCES)]
        running = sum(1 for i in insts if i.recv(120).data == "waiting")
        try:
            host.spawn("block")
            refused = "no"
        except ServiceLimitError as e:
            refused = str(e)
    print(running, refused)
""")


def test_the_default_instance_cap_is_reached_before_a_1024_fd_limit(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    """A desktop's soft fd limit is often 1024: every instance up to `[limits] instances` starts
    (the host raises the soft limit), and the next one is refused, not failed for want of fds."""
    project = make_project({"block": {"source": "blockread", "kind": "dedicated"}}, name="fds")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", _FD_LIMITED_APP, str(project)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    running, refused = out.stdout.strip().split(" ", 1)
    assert int(running) == DEFAULT_HOST_INSTANCES
    assert "[limits] instances" in refused

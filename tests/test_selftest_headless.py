"""`--self-test=headless`: the self-test for machines without a display (the release workflow's
runners), run as `python -m wvwasi.runtime` with no DISPLAY: real services under wasmtime, the
real bridge over loopback HTTP, no window (so no webview library is even loaded)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from bridge_client import PageClient, launch_with, run

from wvwasi.runtime.bridge.protocol import Op, split_json
from wvwasi.runtime.frozen_main import parse_args


def headless(project: Path) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, "-m", "wvwasi.runtime", project,
                           "--self-test=headless"], env=env, capture_output=True, text=True,
                          timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr
    return proc.returncode, json.loads(lines[-1])


def test_every_kind_of_service_and_the_bridge_pass(make_project):
    project = make_project({
        "wc": {"source": "wc"},
        "echo": {"source": "echo_lines", "kind": "dedicated"},
        "spin": {"source": "loop", "kind": "background"},
    })
    status, report = headless(project)
    assert status == 0, report
    assert report["ok"] is True and report["mode"] == "headless" and report["backend"] is None
    assert report["services"] == {
        "wc": {"ok": True, "detail": "ran, exit code 0"},
        "echo": {"ok": True, "detail": "started, then terminated"},
        "spin": {"ok": True, "detail": "subscribed to the running service"},
    }
    assert report["bridge"]["ok"] is True and report["threads_left"] == []


def test_a_trapping_service_fails_the_self_test(make_project):
    project = make_project({"wc": {"source": "wc"},
                            "crash": {"source": "trap", "kind": "dedicated"}})
    status, report = headless(project)
    assert status == 1 and report["ok"] is False
    assert report["services"]["wc"]["ok"] is True
    assert report["services"]["crash"]["ok"] is False
    assert "trapped" in report["services"]["crash"]["detail"]


def test_serve_prints_the_launch_url_serves_and_stops_at_the_end_of_stdin(make_project):
    """`--serve` (App.serve): a page client runs a task through the printed URL; closing the
    pipe on stdin shuts it down cleanly."""
    project = make_project({"wc": {"source": "wc"}})
    code = ("import sys; from wvwasi.runtime.app import run_app; "
            "sys.exit(run_app(sys.argv[1], serve=True))")
    proc = subprocess.Popen([sys.executable, "-c", code, project], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Serving Test App at http://127.0.0.1:"), proc.stderr.read()
        creds = launch_with(line.split(" at ", 1)[1].strip())

        async def page() -> bytes:
            async with await PageClient.open(creds) as client:
                await client.send(run(1, "wc", b"a b\n"))
                return await client.wait_for(Op.RESULT, 1)

        head, rest = split_json(memoryview(asyncio.run(page())))
        assert head["exitCode"] == 0 and bytes(rest[: head["stdoutLength"]]).split() == [
            b"1", b"2", b"4"]
        proc.stdin.close()
        assert proc.stdout.read().strip() == "Stopped." and proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_built_app_command_line():
    assert parse_args(["--serve"]).serve and parse_args(["--version"]).version
    assert parse_args(["--self-test=headless"]).self_test == "headless"
    assert parse_args([]).self_test is False and not parse_args([]).serve
    for bad in (["--serve", "--version"], ["--nope"], ["--self-test=window"]):
        try:
            parse_args(bad)
        except SystemExit as e:
            assert e.code == 2
        else:
            raise AssertionError(f"{bad} accepted")

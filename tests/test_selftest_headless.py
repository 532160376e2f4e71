"""`--self-test=headless`: the self-test for machines without a display (the release workflow's
runners), run as `python -m wvwasi.runtime` with no DISPLAY: real services under wasmtime, the
real bridge over loopback HTTP, no window (so no webview library is even loaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


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

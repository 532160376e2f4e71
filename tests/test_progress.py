"""`wvwasi build`'s progress when its output is not a terminal (CI logs): each step is printed
when it starts, long ones again every heartbeat, and when they end (packager/progress.py)."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

from build_helpers import new_project, wvwasi
from rich.console import Console

from wvwasi.packager.progress import RichProgress


def test_steps_are_printed_when_they_start_and_long_ones_heartbeat() -> None:
    out = io.StringIO()
    progress = RichProgress(Console(file=out, force_terminal=False, width=200), heartbeat=0.05)
    progress.step("format deb")
    progress.step("format rpm")
    time.sleep(0.3)
    progress.done("format rpm", 0.3)
    mark = len(out.getvalue())
    time.sleep(0.2)
    progress.done("format deb", 0.5)
    progress.close(ok=True)
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["… format deb", "… format rpm"]
    beats = [line for line in lines if line.endswith("s)")]
    assert len(beats) >= 4, lines
    assert all(re.fullmatch(r"… format (deb|rpm) still running \(\d+s\)", b) for b in beats)
    assert "format rpm still" not in out.getvalue()[mark:]  # ended: no more heartbeats
    assert lines[-1] == "✓ format deb 0.50s"
    assert out.getvalue().count("✓") == 2


def test_a_build_into_a_pipe_names_each_step_before_it_ends(tmp_path: Path) -> None:
    project = new_project(tmp_path, "Progress Log")
    proc = wvwasi("build", project, "--format", "web")  # stderr is a pipe, not a terminal
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    ended = [line[2:].rsplit(" ", 1)[0] for line in lines if line.startswith("✓ ")]
    assert "format web" in ended, lines
    for name in ended:
        assert lines.index(f"… {name}") < lines.index(next(
            line for line in lines if line.startswith(f"✓ {name} "))), (name, lines)

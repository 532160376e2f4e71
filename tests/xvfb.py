"""Start a private Xvfb screen for tests that open real windows, and screenshot it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def xvfb(width: int = 1280, height: int = 800) -> Iterator[str]:
    """Run `Xvfb` on a free display for the block; yields the DISPLAY value (":N").

    Xvfb picks the display itself (`-displayfd`), so parallel runs never collide.
    """
    if shutil.which("Xvfb") is None:
        raise RuntimeError("Xvfb is not installed (Debian package: xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24",
         "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError(f"Xvfb exited with status {proc.wait(5)} before opening a display")
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def screenshot(display: str, out: Path) -> Path:
    """Save the whole screen of `display` as a PNG at `out` (ImageMagick's `import`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["import", "-display", display, "-window", "root", str(out)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return out

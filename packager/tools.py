"""The one place that runs outside tools (makensis, wixl, appimagetool, PyInstaller...).

`run()` looks the tool up on PATH, logs the command line, captures its output and turns a failure
into a `BuildError` carrying the step and the tool's last output lines. A missing tool names the
Debian package that provides it.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger("wvwasi.build")
#: Bytes of a shell command's output kept for its error message.
SHELL_TAIL = 4096

#: Tool -> the Debian package that provides it (None: not available on Debian).
DEBIAN_PACKAGES: Mapping[str, str | None] = {
    "dpkg-deb": "dpkg",
    "fakeroot": "fakeroot",
    "rpm": "rpm",
    "makensis": "nsis",
    "wixl": "wixl",
    "msiinfo": "msitools",
    "osslsigncode": "osslsigncode",
    "png2icns": "icnsutils",
    "clang": "clang",
    "wine": "wine",  # and wine64; wine32:i386 to run NSIS setups (tests)
    "wineserver": "wine",
    "x86_64-w64-mingw32-gcc": "gcc-mingw-w64-x86-64",
    "appimagetool": None,
    "hdiutil": None,
    "codesign": None,
    "xcrun": None,
    "ditto": None,
    "signtool": None,
}

#: Where a tool that Debian lacks comes from.
ELSEWHERE: Mapping[str, str] = {
    "appimagetool": "not packaged by Debian: install it from the AppImage project and put it "
    "on PATH",
    "hdiutil": "needs macOS (hdiutil is part of macOS): build this format on a macOS machine",
    "codesign": "part of macOS (Xcode command line tools): sign on a macOS machine",
    "xcrun": "part of macOS (Xcode command line tools): notarize on a macOS machine",
    "ditto": "part of macOS: notarize on a macOS machine",
    "signtool": "part of the Windows SDK",
}


class BuildError(Exception):
    """A build step failed: `str()` is `"<step>: <why>"`, one line."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        self.message = message
        super().__init__(f"{step}: {message}")


class ToolMissing(BuildError):
    """A required outside tool is not on PATH."""


def missing_tool_hint(tool: str) -> str:
    """How to get `tool`: the Debian package, or where it comes from."""
    package = DEBIAN_PACKAGES.get(tool, tool)
    if package is None:
        return ELSEWHERE.get(tool, "not available on this system")
    return f"install the Debian package '{package}' (apt-get install {package})"


def find_tool(tool: str, step: str) -> str:
    """The full path of `tool` on PATH; ToolMissing (naming its package) if absent."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(step, f"'{tool}' not found on PATH: {missing_tool_hint(tool)}")
    return path


def have_tool(tool: str) -> bool:
    """Whether `tool` is on PATH."""
    return shutil.which(tool) is not None


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    step: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    redact: Sequence[str] = (),
    timeout: float | None = None,
) -> str:
    """Run an outside tool to completion and return its stdout (text).

    argv[0] is looked up on PATH (ToolMissing if absent). `env` adds to the current environment.
    A non-zero exit raises BuildError with the tool's last lines of output. Strings in `redact`
    (passwords) are masked in the log and in errors. Past `timeout` seconds the tool is killed
    and BuildError says so.
    """
    exe = find_tool(str(argv[0]), step)
    args = [exe, *map(str, argv[1:])]
    log.debug("%s: %s", step, _mask(shlex.join(args), redact))
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(
            args, cwd=cwd, env=full_env, input=input, capture_output=True, check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(step, f"{argv[0]} did not finish within {timeout:.0f}s") from None
    except OSError as e:
        raise BuildError(step, f"cannot run {argv[0]}: {e.strerror or e}") from None
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        text = (proc.stderr.decode("utf-8", "replace") + "\n" + out).strip()
        tail = " | ".join(line.strip() for line in text.splitlines()[-4:] if line.strip())
        message = f"{argv[0]} exited with status {proc.returncode}: {tail}"
        raise BuildError(step, _mask(message, redact))
    return out


def _mask(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def run_shell(
    command: str, *, step: str, cwd: Path, echo: Callable[[bytes], None] | None = None
) -> None:
    """Run a user's shell command (a service's build.command), its stdout and stderr merged and
    passed to `echo` as they come (None: kept quiet); BuildError with its last output lines if
    it fails. Only the last SHELL_TAIL bytes are kept for that message."""
    log.debug("%s: %s (in %s)", step, command, cwd)
    tail = bytearray()
    try:
        with subprocess.Popen(command, shell=True, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
            assert proc.stdout is not None
            while chunk := proc.stdout.read1(1 << 16):
                if echo is not None:
                    echo(chunk)
                tail += chunk
                del tail[:-SHELL_TAIL]
            code = proc.wait()
    except OSError as e:
        raise BuildError(step, f"cannot run `{command}` in {cwd}: {e.strerror or e}") from None
    if code != 0:
        text = tail.decode("utf-8", "replace").strip()
        lines = " | ".join(line.strip() for line in text.splitlines()[-3:] if line.strip())
        raise BuildError(step, f"`{command}` exited with status {code}"
                         + (f": {lines}" if lines else ""))

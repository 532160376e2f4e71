"""A project folder full of traps for manifest and module fuzzing: a symlink loop, a FIFO,
a directory, /dev/zero, a PNG and a not-PNG, valid and broken modules."""

from __future__ import annotations

import os
from pathlib import Path

import wasmtime

COMMAND_WAT = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")))"""
#: Legacy exception handling (`try`/`catch`): valid WebAssembly that wasmtime 50 cannot
#: compile by default ("legacy_exceptions feature required").
LEGACY_EH_WAT = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (tag $e)
  (memory (export "memory") 1)
  (func (export "_start")
    try
      throw $e
    catch $e
    end))"""
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32

#: Relative paths inside the hostile project, by what they are.
TRAPS = {
    "loop": "loop",  # symlink to itself
    "fifo": "fifo",
    "dir": "dir",
    "zero": "zero",  # symlink to /dev/zero
    "ok_wasm": "services/ok.wasm",
    "legacy_wasm": "services/legacy.wasm",
    "truncated_wasm": "services/truncated.wasm",
    "png": "icon.png",
    "not_png": "notpng.png",
    "missing": "missing.wasm",
}


def wat(text: str) -> bytes:
    """A WAT text as module bytes."""
    return bytes(wasmtime.wat2wasm(text))


def make_hostile_project(root: Path) -> Path:
    """Create the trap folder (with ui/index.html so a manifest can be valid) and return it."""
    (root / "ui").mkdir(parents=True)
    (root / "ui" / "index.html").write_text("<!doctype html><title>t</title>\n")
    (root / "services").mkdir()
    (root / "services" / "ok.wasm").write_bytes(wat(COMMAND_WAT))
    (root / "services" / "legacy.wasm").write_bytes(wat(LEGACY_EH_WAT))
    (root / "services" / "truncated.wasm").write_bytes(wat(COMMAND_WAT)[:20])
    (root / "loop").symlink_to("loop")
    os.mkfifo(root / "fifo")
    (root / "dir").mkdir()
    (root / "zero").symlink_to("/dev/zero")
    (root / "icon.png").write_bytes(PNG)
    (root / "notpng.png").write_bytes(b"GIF89a")
    return root


def valid_tables() -> dict:
    """A manifest (as TOML tables) that loads cleanly in the hostile project."""
    return {
        "app": {"name": "Fuzz", "identifier": "dev.wvwasi.fuzz", "icon": TRAPS["png"]},
        "ui": {"dir": "ui"},
        "window": {"width": 640},
        "services": {
            "svc": {
                "source": TRAPS["ok_wasm"],
                "args": ["-v"],
                "env": {"K": "v"},
                "preopens": [{"guest": "/data", "host": "$APPDATA/x", "mode": "rw"}],
                "limits": {"memory": "64MiB", "timeout": "30s", "instances": 4},
                "build": {"command": "true", "watch": ["src"]},
            },
        },
        "bundle": {"formats": ["dir"], "resources": ["ui"], "linux": {"depends": ["libc6"]}},
        "target": {
            "linux": {"webview": "gtk"},
            "windows": {"services": {"svc": {"ipc": "frames"}}},
        },
    }

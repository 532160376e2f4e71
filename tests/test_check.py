"""runtime/wasminfo.py and `wvwasi check`: structural .wasm checks and the command's report."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from wvwasi.runtime.wasminfo import ModuleInfo, WasmModuleError, check_command_module, inspect

COMMAND = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wvwasi_net" "send" (func (param i32 i32)))
  (import "wvwasi_net" "table" (table 1 funcref))
  (import "wvwasi_net" "limit" (global i32))
  (memory (export "memory") 1 2)
  (func (export "_start"))
  (global (export "g") i32 (i32.const 1)))"""
REACTOR = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "render") (result i32) (i32.const 0)))"""
FOREIGN = """(module
  (import "env" "emscripten_memcpy" (func (param i32 i32 i32)))
  (import "env" "abort" (func))
  (import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wvwasi" "send" (func (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "_start")))"""
NO_MEMORY = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (func (export "_start")))"""
COMPONENT = b"\0asm\x0d\x00\x01\x00" + b"\x01\x00"


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


@pytest.fixture
def module(tmp_path: Path) -> Callable[[str, bytes], Path]:
    def write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return write


def test_inspect_lists_imports_and_exports(module) -> None:
    info = inspect(module("cmd.wasm", wat(COMMAND)))
    assert info == ModuleInfo(
        imports=(
            ("wasi_snapshot_preview1", "proc_exit", "func"),
            ("wasi_snapshot_preview1", "fd_write", "func"),
            ("wvwasi_net", "send", "func"),
            ("wvwasi_net", "table", "table"),
            ("wvwasi_net", "limit", "global"),
        ),
        exports=(("memory", "memory"), ("_start", "func"), ("g", "global")),
    )
    assert check_command_module(module("cmd2.wasm", wat(COMMAND))) == info


def test_real_c_fixture_is_a_command_module(wasm_fixture) -> None:
    info = check_command_module(wasm_fixture("wc"))
    assert ("_start", "func") in info.exports
    assert {m for m, _, _ in info.imports} == {"wasi_snapshot_preview1"}
    assert ("wasi_snapshot_preview1", "fd_read", "func") in info.imports


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"MZ\x90\x00 definitely not wasm", "not a WebAssembly module (bad magic bytes)"),
        (b"", "not a WebAssembly module (bad magic bytes)"),
        (COMPONENT, "is a WASI 0.2 component, wvwasi runs preview1 modules"),
        (b"\0asm\x02\x00\x00\x00", "unsupported WebAssembly version 02000000"),
        (wat(REACTOR), "has no _start export: it looks like a reactor/library module "
         "(it exports _initialize)"),
        (wat(FOREIGN), 'imports from modules wvwasi does not provide: "env" '
         '(emscripten_memcpy, abort); "wasi_unstable" (fd_write); "wvwasi" (send); only '
         "wasi_snapshot_preview1 (WASI preview1) and wvwasi_net"),
        (wat(NO_MEMORY), 'exports no memory named "memory"'),
        (wat(COMMAND)[:40], "malformed WebAssembly module"),
    ],
    ids=["bad-magic", "empty", "component", "version", "reactor", "foreign", "no-memory",
         "truncated"],
)
def test_rejected_modules(module, data: bytes, reason: str) -> None:
    path = module("svc.wasm", data)
    with pytest.raises(WasmModuleError) as info:
        check_command_module(path)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")
    assert reason in info.value.reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WasmModuleError, match=r"nope\.wasm: file not found"):
        inspect(tmp_path / "nope.wasm")


# --- `wvwasi check` as a subprocess ----------------------------------------------------------


def wvwasi_check(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wvwasi", "check", str(project)],
        capture_output=True, text=True, timeout=60,
    )


def test_check_good_project(make_project) -> None:
    root = make_project(
        {"wc": {"source": "wc"}, "echo": {"source": "echo_lines", "kind": "dedicated"}},
        extra={"bundle": {"resources": ["ui"]}},
    )
    proc = wvwasi_check(root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == (
        "ok: Test App 0.1.0 (dev.wvwasi.test): services wc, echo; "
        "checked for linux, windows, macos\n"
    )


def test_check_reports_every_bad_service(make_project, tmp_path: Path) -> None:
    sources = {"bad": b"not wasm", "reactor": wat(REACTOR), "component": COMPONENT,
               "foreign": wat(FOREIGN)}
    for name, data in sources.items():
        (tmp_path / f"{name}.wasm").write_bytes(data)
    root = make_project(
        {
            **{name: {"source": tmp_path / f"{name}.wasm"} for name in sources},
            "built": {"source": "out/built.wasm", "build": {"command": "make"}},
            "gone": {"source": "out/gone.wasm"},
            "fine": {"source": "wc", "preopens": [{"guest": "/d", "host": "data"}]},
        },
        extra={"bundle": {"resources": ["assets"]}},
    )
    proc = wvwasi_check(root)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    key = f"error: {root}/wvwasi.toml: services"
    assert lines == [
        f"{key}.bad.source: services/bad.wasm: not a WebAssembly module (bad magic bytes)",
        f"{key}.reactor.source: services/reactor.wasm: has no _start export: it looks like a "
        "reactor/library module (it exports _initialize); wvwasi runs command modules "
        "(a program with main())",
        f"{key}.component.source: services/component.wasm: is a WASI 0.2 component, wvwasi "
        "runs preview1 modules (build for wasm32-wasip1 / wasm32-wasi)",
        f'{key}.foreign.source: services/foreign.wasm: imports from modules wvwasi does not '
        'provide: "env" (emscripten_memcpy, abort); "wasi_unstable" (fd_write); "wvwasi" '
        "(send); only wasi_snapshot_preview1 (WASI preview1) and wvwasi_net (sockets, "
        "docs/manifest.md) are available: build it as a WASI preview1 command "
        "(wasm32-wasip1 / wasm32-wasi)",
        f"{key}.built.source: out/built.wasm does not exist; run its build.command first "
        "(`wvwasi build`)",
        f"{key}.gone.source: out/gone.wasm does not exist and the service has no "
        "build.command to create it",
        f"error: {root}/wvwasi.toml: bundle.resources[0]: assets does not exist",
        f'{key}.fine.preopens[0].host: "data" is relative, which a built app opens in its '
        'shipped resources ($RESOURCES): add "data" (or a folder holding it) to '
        "bundle.resources, or start it with a variable such as $APPDATA",
        "8 problems found",
    ]


def test_check_reports_manifest_errors_for_other_targets(make_project) -> None:
    root = make_project(
        {"wc": {"source": "wc"}},
        extra={"target": {"windows": {"services": {"wc": {"ipc": "socket"}}}}},
    )
    proc = wvwasi_check(root)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f'error: {root}/wvwasi.toml: target.windows.services.wc.ipc: expected "lines", '
        '"frames" or "stream", got "socket"',
        "1 problem found",
    ]


def test_check_base_error_reported_once(make_project) -> None:
    root = make_project({"wc": {"source": "wc"}}, extra={"window": {"width": "wide"}})
    proc = wvwasi_check(root)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {root}/wvwasi.toml: window.width: expected an integer, got a string",
        "1 problem found",
    ]


def test_check_missing_project(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wvwasi", "check", "nope"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: nope/wvwasi.toml: file not found",
                                        "1 problem found"]

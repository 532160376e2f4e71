"""`wvwasi check`, `exec` and `build` (real CLI subprocesses) on hostile projects: each bad
input gives one `error:` line naming the file and the key (or the module and why), exit 2 for
check/exec and 1 for build, within seconds — no traceback, no hang, no read without end."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import tomli_w
from hostile_project import COMMAND_WAT, LEGACY_EH_WAT, wat

WVWASI = Path(sys.executable).parent / "wvwasi"  # the installed console script
REACTOR_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_initialize")))"""
LEGACY_REASON = "legacy_exceptions feature required for try instruction"
EXNREF_WAT = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (tag $e (param i32))
  (memory (export "memory") 1)
  (func (export "_start")
    (block $caught (result i32)
      (try_table (catch $e $caught) (throw $e (i32.const 7)))
      (i32.const 0))
    (call 0)))"""


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WVWASI_CACHE_DIR": str(Path(tempfile.gettempdir()) / "wvwasi-h7d")}
    return subprocess.run([str(WVWASI), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "ui").mkdir(parents=True)
    (root / "ui" / "index.html").write_text("<!doctype html><title>t</title>\n")
    (root / "services").mkdir()
    (root / "services" / "ok.wasm").write_bytes(wat(COMMAND_WAT))
    return root


def write(root: Path, services: dict | None = None, **tables: dict) -> Path:
    doc = {"app": {"name": "Hostile", "identifier": "dev.wvwasi.hostile"},
           "services": services if services is not None else
           {"svc": {"source": "services/ok.wasm"}}}
    for name, table in tables.items():
        doc[name] = {**doc.get(name, {}), **table}
    (root / "wvwasi.toml").write_text(tomli_w.dumps(doc))
    return root / "wvwasi.toml"


def check_fails(root: Path) -> list[str]:
    """`wvwasi check`'s error lines (exit 2, no traceback, a summary line last)."""
    proc = run("check", root)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-1].endswith("found"), lines
    return lines[:-1]


def test_the_base_project_is_ok(project: Path) -> None:
    write(project)
    proc = run("check", project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: Hostile 0.1.0")


# --- paths that are not regular files -------------------------------------------------------


def test_source_is_a_symlink_loop(project: Path) -> None:
    (project / "loop").symlink_to("loop")
    file = write(project, {"svc": {"source": "loop"}})
    assert check_fails(project) == [
        f'error: {file}: services.svc.source: "loop" is a symlink loop or cannot be resolved']


def test_source_is_a_fifo_does_not_hang(project: Path) -> None:
    os.mkfifo(project / "pipe.wasm")
    file = write(project, {"svc": {"source": "pipe.wasm"}})
    assert check_fails(project) == [
        f"error: {file}: services.svc.source: pipe.wasm: is a FIFO, not a regular file"]


def test_source_is_a_directory(project: Path) -> None:
    (project / "dir.wasm").mkdir()
    file = write(project, {"svc": {"source": "dir.wasm"}})
    assert check_fails(project) == [
        f"error: {file}: services.svc.source: dir.wasm: is a directory, not a regular file"]


@pytest.mark.parametrize("icon", ["zero", "/dev/zero"])
def test_icon_is_dev_zero_is_not_read(project: Path, icon: str) -> None:
    (project / "zero").symlink_to("/dev/zero")
    file = write(project, app={"icon": icon})
    assert check_fails(project) == [
        f'error: {file}: app.icon: cannot read "{icon}": is a character device, not a regular '
        "file"]


def test_icon_is_a_fifo_or_a_directory(project: Path) -> None:
    os.mkfifo(project / "icon.png")
    file = write(project, app={"icon": "icon.png"})
    assert check_fails(project) == [
        f'error: {file}: app.icon: cannot read "icon.png": is a FIFO, not a regular file']
    (project / "icon.png").unlink()
    (project / "icon.png").mkdir()
    assert check_fails(project) == [
        f'error: {file}: app.icon: cannot read "icon.png": is a directory, not a regular file']


def test_manifest_is_a_fifo(project: Path) -> None:
    os.mkfifo(project / "wvwasi.toml")
    assert check_fails(project) == [
        f"error: {project / 'wvwasi.toml'}: is a FIFO, not a regular file"]


def test_nul_in_a_path(project: Path) -> None:
    file = write(project, {"svc": {"source": "services/ok.wasm\0x"}})
    assert check_fails(project) == [
        f"error: {file}: services.svc.source: expected a string without NUL characters"]


def test_over_long_file_name(project: Path) -> None:
    file = write(project, {"svc": {"source": "x" * 300 + ".wasm"}}, ui={"dir": "u" * 300})
    assert check_fails(project) == [
        f'error: {file}: ui.dir: expected an existing folder, got "{"u" * 300}" '
        f"({project / ('u' * 300)})",
        f"error: {file}: services.svc.source: {'x' * 300}.wasm: has a name that is too long",
    ]


def test_a_file_used_as_a_folder(project: Path) -> None:
    file = write(project, {"svc": {"source": "services/ok.wasm/inner.wasm"}})
    assert check_fails(project) == [
        f"error: {file}: services.svc.source: services/ok.wasm/inner.wasm: cannot be read: "
        "Not a directory"]


# --- numbers, types, TOML -------------------------------------------------------------------


def test_huge_numbers(project: Path) -> None:
    file = write(
        project,
        {"svc": {"source": "services/ok.wasm",
                 "limits": {"memory": "9" * 400 + "GiB", "timeout": "9" * 400 + "s",
                            "instances": 2**63 - 1}}},
        window={"width": 10**30},
    )
    file.write_text(file.read_text() + f"[services.long]\nsource = \"services/ok.wasm\"\n"
                    f"limits = {{ timeout = {10**400} }}\n")
    lines = check_fails(project)
    assert lines == [
        f"error: {file}: window.width: expected an integer at most 2147483647, got {10**30}",
        f"error: {file}: services.svc.limits.memory: expected a size at most {2**63 - 1} bytes, "
        f'got "{"9" * 400}GiB"',
        f"error: {file}: services.long.limits.timeout: expected a duration at most 2147483648 "
        f"seconds, got {10**400}",
    ]


def test_integer_beyond_python_limit(project: Path) -> None:
    file = write(project)
    file.write_text(file.read_text() + f"\n[window]\nwidth = {'9' * 5000}\n")
    [line] = check_fails(project)
    assert line.startswith(f"error: {file}: invalid TOML: Exceeds the limit (4300 digits)")


def test_every_problem_is_reported(project: Path) -> None:
    (project / "services" / "legacy.wasm").write_bytes(wat(LEGACY_EH_WAT))
    (project / "services" / "reactor.wasm").write_bytes(wat(REACTOR_WAT))
    file = write(
        project,
        {
            "legacy": {"source": "services/legacy.wasm"},
            "reactor": {"source": "services/reactor.wasm"},
            "typo": {"source": "services/ok.wasm", "args": 3},
            "gone": {"source": "services/gone.wasm"},
        },
        window={"width": "wide"},
        bundle={"formats": ["zap"]},
        extra={"x": 1},
    )
    lines = check_fails(project)
    key = f"error: {file}:"
    assert lines[:4] == [
        f"{key} extra: unknown key",
        f"{key} window.width: expected an integer, got a string",
        f"{key} services.typo.args: expected an array of strings, got an integer",
        f'{key} bundle.formats[0]: expected one of "dir", "onefile", "tar.gz", "deb", "rpm", '
        '"appimage", "nsis", "msi", "zip", "app" or "dmg", got "zap" (did you mean "zip"?)',
    ]
    assert lines[4].startswith(f"{key} services.legacy.source: services/legacy.wasm: invalid "
                               "WebAssembly: ")
    assert LEGACY_REASON in lines[4]
    assert lines[5].startswith(f"{key} services.reactor.source: services/reactor.wasm: has no "
                               "_start export")
    assert lines[6] == (f"{key} services.gone.source: services/gone.wasm does not exist and the "
                        "service has no build.command to create it")
    assert len(lines) == 7


# --- modules wasmtime cannot compile: check, exec and build stop at validation ---------------


def test_check_rejects_a_module_wasmtime_cannot_compile(project: Path) -> None:
    (project / "services" / "legacy.wasm").write_bytes(wat(LEGACY_EH_WAT))
    file = write(project, {"svc": {"source": "services/legacy.wasm"}})
    [line] = check_fails(project)
    assert line.startswith(f"error: {file}: services.svc.source: services/legacy.wasm: invalid "
                           f"WebAssembly: {LEGACY_REASON} (at offset 0x")
    assert line.endswith("; the module uses legacy exception handling (`try`/`catch`), which "
                         "wasmtime cannot run: rebuild it with standard exception handling "
                         "(exnref; Emscripten: `-fwasm-exceptions -sWASM_LEGACY_EXCEPTIONS=0`) "
                         "or without exceptions, or convert it with Binaryen: `wasm-opt "
                         "--translate-to-exnref -all -o new.wasm old.wasm`"), line


def test_standard_exception_handling_passes_validation(project: Path) -> None:
    """What the legacy hint recommends (exnref: try_table/throw) is accepted by `check`."""
    (project / "services" / "exnref.wasm").write_bytes(wat(EXNREF_WAT))
    write(project, {"svc": {"source": "services/exnref.wasm"}})
    proc = run("check", project)
    assert proc.returncode == 0, proc.stderr


def test_exec_stops_at_validation_with_the_whole_reason(project: Path) -> None:
    legacy = project / "services" / "legacy.wasm"
    legacy.write_bytes(wat(LEGACY_EH_WAT))
    write(project, {"svc": {"source": "services/legacy.wasm"}})
    for target in ("svc", legacy):
        started = time.monotonic()
        proc = run("exec", "--project", project, target, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        [line] = proc.stderr.splitlines()
        assert line.startswith(f"error: {legacy}: invalid WebAssembly: {LEGACY_REASON} (at "
                               "offset 0x"), line
        assert time.monotonic() - started < 60  # seconds, not a compile's minutes


def test_exec_runs_the_import_check(project: Path) -> None:
    reactor = project / "services" / "reactor.wasm"
    reactor.write_bytes(wat(REACTOR_WAT))
    proc = run("exec", reactor)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {reactor}: has no _start export: it looks like a reactor/library module (it "
        "exports _initialize); wvwasi runs command modules (a program with main())"]


def test_exec_source_is_a_fifo(project: Path) -> None:
    os.mkfifo(project / "pipe.wasm")
    proc = run("exec", project / "pipe.wasm", timeout=60)
    assert (proc.returncode, proc.stderr.splitlines()) == (
        2, [f"error: {project / 'pipe.wasm'}: is a FIFO, not a regular file"])


def test_build_stops_at_validation(project: Path) -> None:
    legacy = project / "services" / "legacy.wasm"
    legacy.write_bytes(wat(LEGACY_EH_WAT))
    write(project, {"svc": {"source": "services/legacy.wasm"}})
    proc = run("build", project, "--format", "dir", timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert not (project / "dist").exists()
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: check services.svc: {legacy}: invalid WebAssembly: "
                           f"{LEGACY_REASON} (at offset 0x"), line

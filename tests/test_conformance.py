"""The WASI preview1 test suite (wasi-testsuite: C, Rust and AssemblyScript programs), run through
the service host exactly as an app runs a task: manifest -> ServiceHost -> run_task.

The suite lives in shared/wasi-testsuite beside the repository (override: $WVWASI_TESTSUITE); its
SPECIFICATION.md says how each program's JSON spec is read. Every program is one test.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import pytest

from wvwasi.runtime.host.service_host import ServiceHost
from wvwasi.runtime.manifest import Limits, Preopen, manifest_for_wasm
from wvwasi.runtime.paths import PathContext

TESTSUITE = Path(
    os.environ.get("WVWASI_TESTSUITE")
    or Path(__file__).resolve().parents[2] / "shared" / "wasi-testsuite"
)
SUITES = ("c", "rust", "assemblyscript")
STREAMS = ("stdout", "stderr")
EXPECTED_PROGRAMS = 72
#: Generous: a hung program fails as a timeout instead of hanging the run.
TIMEOUT = 60.0


@dataclass(frozen=True)
class Case:
    """One test program and what its spec expects."""

    suite: str
    wasm: Path
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    root: str | None = None
    exit_code: int = 0
    stdout: str | None = None  # None: not checked (the spec gives no payload)
    stderr: str | None = None
    unsupported: tuple[str, ...] = ()  # operations this runner cannot perform

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.wasm.stem}"


def load_case(suite: str, wasm: Path) -> Case:
    """Read `NAME.json` beside `wasm` (legacy or operation-based form; absent = defaults).

    The reference runner reads only as many characters as a `read` payload has, so an output the
    spec does not state is not checked; a stated one must match the whole output.
    """
    spec_file = wasm.with_suffix(".json")
    spec = json.loads(spec_file.read_text()) if spec_file.exists() else {}
    ops = spec.get("operations")
    if ops is None:  # the legacy form is run + read stdout/stderr + wait
        ops = [
            {"type": "run", **{k: spec[k] for k in ("args", "env", "root") if k in spec}},
            *({"type": "read", "id": k, "payload": spec[k]} for k in STREAMS if k in spec),
            {"type": "wait", "exit_code": spec.get("exit_code", 0)},
        ]
    case = Case(suite, wasm, unsupported=tuple(spec.get("proposals", ())))
    for op in ops:
        kind = op["type"]
        if kind == "run":
            case = replace(
                case,
                args=tuple(op.get("args", ())),
                env=tuple(op.get("env", {}).items()),
                root=op.get("root"),
            )
        elif kind == "read":
            case = replace(case, **{op.get("id", "stdout"): op.get("payload", "")})
        elif kind == "wait":
            case = replace(case, exit_code=op.get("exit_code", 0))
        else:
            case = replace(case, unsupported=(*case.unsupported, kind))
    return case


def collect_cases() -> list[Case]:
    return [
        load_case(suite, wasm)
        for suite in SUITES
        for wasm in sorted((TESTSUITE / suite / "testsuite" / "wasm32-wasip1").glob("*.wasm"))
    ]


CASES = collect_cases()


def _writable_copy(src: Path, dest: Path) -> None:
    """Copy a test's root folder (read-only in the suite) and drop stale `*.cleanup` artefacts."""
    shutil.copytree(src, dest, symlinks=True)
    for path in [dest, *dest.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    for leftover in dest.rglob("*.cleanup"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()


@dataclass
class Suite:
    """One ServiceHost running every program of a suite; each program is a task service."""

    host: ServiceHost
    paths: PathContext
    services: dict[str, str]  # case id -> service name


@pytest.fixture(scope="module")
def suite_host(
    tmp_path_factory: pytest.TempPathFactory, module_cache_dir: Path
) -> Iterator[Callable[[str], Suite]]:
    """`suite_host("rust")` -> that suite's host, built on first use and closed at the end."""
    suites: dict[str, Suite] = {}

    def get(name: str) -> Suite:
        if name not in suites:
            work = tmp_path_factory.mktemp(f"wasi-{name}")
            services, names = {}, {}
            for case in (c for c in CASES if c.suite == name):
                preopens = ()
                if case.root is not None:
                    copy = work / case.wasm.stem
                    _writable_copy(case.wasm.parent / case.root, copy)
                    preopens = (Preopen(guest="/", host=str(copy), mode="rw"),)
                single = manifest_for_wasm(
                    case.wasm,
                    args=case.args,
                    env=case.env,
                    preopens=preopens,
                    ipc="stream",
                    kind="task",
                    limits=Limits(timeout=TIMEOUT),
                )
                (service,) = single.services.values()
                services[service.name] = service
                names[case.id] = service.name
            manifest = replace(single, services=MappingProxyType(services))
            paths = PathContext.for_app(
                manifest, base_dirs={"CACHE": module_cache_dir, "APPDATA": work / "appdata"}
            )
            suites[name] = Suite(ServiceHost(manifest, paths=paths), paths, names)
        return suites[name]

    yield get
    for suite in suites.values():
        suite.host.close()
        suite.paths.close()


def test_suite_is_complete() -> None:
    assert len(CASES) == EXPECTED_PROGRAMS, (
        f"expected {EXPECTED_PROGRAMS} wasi-testsuite programs under {TESTSUITE}, found "
        f"{len(CASES)} (set $WVWASI_TESTSUITE to the suite's folder)"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_wasi_testsuite(case: Case, suite_host: Callable[[str], Suite]) -> None:
    assert not case.unsupported, f"spec needs {case.unsupported}, which preview1 tasks lack"
    suite = suite_host(case.suite)
    result = suite.host.run_task(suite.services[case.id], stdin=b"")
    stdout, stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    assert result.exit_code == case.exit_code, (result.error, stdout, stderr)
    if case.stdout is not None:
        assert stdout == case.stdout
    if case.stderr is not None:
        assert stderr == case.stderr
    if case.exit_code == 0:
        assert result.error is None

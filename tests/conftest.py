"""Shared pytest fixtures. Keep each fixture generic and grouped by topic.

- WASI C fixtures: `wasm_fixture(name) -> Path` (tests/fixtures/c/NAME.c, built once per session).
- Projects: `make_project(services, ...) -> Path` writes a project folder into tmp_path.
- Service hosts: `make_host(manifest) -> ServiceHost`, closed after the test, isolated app dirs.
- Update tests: `server`, a loopback HTTP server per module (tests/update_server.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from projects import write_project
from wasm import SOURCE_DIR, ToolchainError, build_fixtures

pytest_plugins = ("update_server",)

# --- WASI C fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wasm_fixtures() -> dict[str, Path]:
    """Every C fixture compiled (cached in tests/.fixtures/); fails, never skips, without clang."""
    try:
        return build_fixtures()
    except ToolchainError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def wasm_fixture(wasm_fixtures: dict[str, Path]) -> Callable[[str], Path]:
    """`wasm_fixture("echo_lines")` -> the built .wasm of tests/fixtures/c/echo_lines.c."""

    def get(name: str) -> Path:
        try:
            return wasm_fixtures[name]
        except KeyError:
            have = ", ".join(sorted(wasm_fixtures))
            raise LookupError(f"no fixture {SOURCE_DIR / name}.c (have: {have})") from None

    return get


# --- projects --------------------------------------------------------------------------------


@pytest.fixture
def make_project(
    tmp_path: Path, wasm_fixture: Callable[[str], Path]
) -> Callable[..., Path]:
    """`make_project({"echo": {"source": "echo_lines", "kind": "dedicated"}}, app=..., extra=...,
    name="app")` -> a project folder in tmp_path (see projects.write_project)."""

    def make(
        services: Mapping[str, Mapping[str, Any]], *, name: str = "app", **kwargs: Any
    ) -> Path:
        return write_project(tmp_path / name, services, resolve_wasm=wasm_fixture, **kwargs)

    return make


# --- service hosts ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def module_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compile cache for every host of the session, so each module compiles once."""
    return tmp_path_factory.mktemp("wvwasi-cache")


@pytest.fixture
def make_host(tmp_path: Path, module_cache_dir: Path) -> Iterator[Callable[..., Any]]:
    """`make_host(manifest, **kwargs) -> ServiceHost` with $APPDATA etc. under tmp_path and the
    session's compile cache; every host is closed after the test."""
    from wvwasi.runtime.host.service_host import ServiceHost
    from wvwasi.runtime.paths import PathContext

    made: list[tuple[ServiceHost, PathContext]] = []

    def make(manifest: Any, **kwargs: Any) -> ServiceHost:
        dirs = {v: tmp_path / "dirs" / v.lower() for v in ("APPDATA", "DOCUMENTS", "HOME")}
        paths = PathContext.for_app(manifest, base_dirs={**dirs, "CACHE": module_cache_dir})
        host = ServiceHost(manifest, paths=paths, **{"compile_cache": module_cache_dir, **kwargs})
        made.append((host, paths))
        return host

    yield make
    for host, paths in made:
        host.close()
        paths.close()

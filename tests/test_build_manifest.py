"""Built = run: the app `wvwasi build --format dir` makes loads the manifest `wvwasi run` loads for
the same project (every bound, grant, preopen, page preopen, target overlay; only paths point
into the payload and build steps are gone), and enforces it: its bridge, served from the built
payload the way the frozen app serves it, refuses a page's 4th worker when the manifest says 3.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from bridge_client import PageClient, launch, spawn
from browser import ServedApp, served_app
from build_helpers import wvwasi
from projects import write_project

from wvwasi.runtime.bridge.protocol import Op
from wvwasi.runtime.host.modules import content_name
from wvwasi.runtime.manifest import Manifest, load_manifest

pytestmark = pytest.mark.timeout(900)

PER_PAGE = 3
SERVICES = {
    "echo": {
        "source": "blockread", "kind": "dedicated", "args": ["-v"], "env": {"K": "v"},
        "preopens": [{"guest": "/data", "host": "$APPDATA/data", "mode": "rw"}],
        "limits": {"files": 5, "files_size": "1MiB", "message": "64KiB", "memory": "32MiB",
                   "timeout": "30s", "instances": 5},
        "user_grants": True, "scratch": True,
        "build": {"command": "true", "watch": ["services/*.wasm"]},
    },
    # a relative preopen host: beneath $RESOURCES, so the project's data/ or the shipped copy
    "read": {"source": "readfile", "kind": "task", "args": ["/shipped/a.txt"],
             "preopens": [{"guest": "/shipped", "host": "data"}]},
    "count": {"source": "wc", "kind": "task", "ipc": "stream",
              "net": {"connect": ["api.example.com:443", "[::1]:8080"], "ca": "$RESOURCES/ca.pem",
                      "sockets": 2, "read_timeout": "5s"}},
}
EXTRA = {
    "limits": {"instances": 7, "instances_per_page": PER_PAGE, "sockets": 9},
    "page": {"preopens": [{"guest": "/notes", "host": "$APPDATA/notes", "mode": "rw"}]},
    "window": {"title": "Built", "width": 500, "resizable": False},
    "bundle": {"formats": ["dir"], "resources": ["data"]},
    "target": {
        "linux": {"services": {"count": {"args": ["--linux"]}}, "window": {"height": 333}},
        "windows": {"limits": {"instances_per_page": 30}, "page": {"preopens": []}},
    },
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path]) -> Path:
    root = write_project(tmp_path_factory.mktemp("built") / "proj", SERVICES,
                         resolve_wasm=wasm_fixture, extra=EXTRA)
    (root / "data").mkdir()
    (root / "data" / "a.txt").write_text("shipped\n")
    return root


@pytest.fixture(scope="module")
def payload(project: Path) -> Path:
    """The `app/` folder of the built `dir` app."""
    proc = wvwasi("build", project, "--format", "dir", "--json")
    assert proc.returncode == 0, proc.stderr
    (folder,) = [Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]
                 if a["format"] == "dir"]
    return folder / "app"


def in_payload(run: Manifest, payload: Path) -> Manifest:
    """`run` with each path where staging puts it, and without build steps."""
    services = {  # each module under its content name (packager/stage.py)
        name: replace(s, source=payload / "services" / content_name(s.source), build=None)
        for name, s in run.services.items()
    }
    return replace(
        run, path=payload / "wvwasi.toml", root=payload,
        app=replace(run.app, icon=payload / "icon.png"),
        ui=replace(run.ui, dir=payload / "ui"),
        services=MappingProxyType(services),
        bundle=replace(run.bundle, resources=tuple(
            payload / "resources" / r.relative_to(run.root) for r in run.bundle.resources)),
    )


def test_the_built_app_loads_the_manifest_run_loads(project: Path, payload: Path) -> None:
    run = load_manifest(project)  # what `wvwasi run` loads (this machine: Linux)
    built = load_manifest(payload)  # what the frozen app loads (frozen_main -> run_app)
    assert built == in_payload(run, payload)
    # the example, spelled out: before, these were the defaults in the built app
    assert (built.limits.instances, built.limits.instances_per_page) == (7, PER_PAGE)
    assert built.page.preopens == run.page.preopens and built.page.preopens[0].guest == "/notes"
    limits = built.services["echo"].limits
    assert (limits.files, limits.files_size, limits.message) == (5, 1 << 20, 64 << 10)
    assert built.services["count"].args == ("--linux",) and built.window.height == 333
    assert (payload / "resources" / "data" / "a.txt").read_text() == "shipped\n"


@pytest.fixture(scope="module")
def built_app(
    payload: Path, tmp_path_factory: pytest.TempPathFactory, module_cache_dir: Path
) -> Iterator[ServedApp]:
    dirs = tmp_path_factory.mktemp("built-dirs")
    with served_app(payload, dirs=dirs, cache=module_cache_dir, copy_pages=False,
                    resources=payload / "resources") as app:  # as frozen_main runs it
        assert app.manifest.path == payload / "wvwasi.toml"
        yield app


def test_the_built_app_refuses_a_pages_fourth_worker(built_app: ServedApp) -> None:
    async def scenario() -> list[tuple[Op, bytes] | None]:
        async with await PageClient.open(launch(built_app)) as page:
            await page.send(*(spawn(i, "echo") for i in range(1, PER_PAGE + 2)))
            return [await page.answer(i, (Op.MESSAGE, Op.ERROR), timeout=60)
                    for i in range(1, PER_PAGE + 2)]

    answers: list[Any] = asyncio.run(scenario())
    assert [op for op, _ in answers] == [Op.MESSAGE] * PER_PAGE + [Op.ERROR]
    refusal = json.loads(answers[-1][1][4:])
    assert refusal["kind"] == "limit" and "instances_per_page" in refusal["message"], refusal


def test_a_relative_preopen_opens_the_same_files_built_and_run(
    project: Path, built_app: ServedApp, module_cache_dir: Path, tmp_path: Path
) -> None:
    """A relative preopen `host` ("data") lies beneath $RESOURCES: the project's folder under
    `wvwasi run`, the copy `bundle.resources` ships in the built app (before: the payload's
    own `data`, which does not exist, so the built app's task failed)."""
    built = built_app.spy.run_task("read")
    with served_app(project, dirs=tmp_path, cache=module_cache_dir, copy_pages=False) as run:
        ran = run.spy.run_task("read")
    assert (built.exit_code, built.stdout, built.stderr) == (ran.exit_code, ran.stdout,
                                                            ran.stderr) == (0, b"shipped\n", b"")
    assert (project / "data" / "a.txt").read_text() == "shipped\n"

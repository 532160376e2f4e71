"""Two services of one .wasm: the build stores and compiles the module once (content-addressed)
in the payload, so in every package made from it, and in the web site (one download)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from browser import site_page
from build_helpers import SDE, cli_env, module_id, new_project, self_test, wvwasi
from xvfb import xvfb

from wvwasi.runtime.manifest import load_manifest

SECOND = """
[services.greet2]
source = "build/greet.wasm"
kind = "task"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_project(tmp_path_factory.mktemp("shared"), "Shared Module", SECOND,
                       identifier="dev.wvwasi.tests.sharedmodule")


def build(project: Path, *formats: str) -> dict[str, Any]:
    args = [arg for f in formats for arg in ("--format", f)]
    proc = wvwasi("build", project, *args, "--out", project / f"dist-{formats[0]}", "--json",
                  env=cli_env(SOURCE_DATE_EPOCH=SDE))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def report(project: Path) -> dict[str, Any]:
    return build(project, "dir", "deb")


def artefact(report: dict[str, Any], fmt: str) -> Path:
    (path,) = [Path(a["path"]) for a in report["artefacts"] if a["format"] == fmt]
    return path


def test_the_payload_holds_the_module_once_and_both_services_run(report: dict[str, Any]):
    folder = artefact(report, "dir")
    payload = folder / "app"
    module = module_id(payload, "greet")
    assert re.fullmatch(r"[0-9a-f]{16}", module)
    manifest = load_manifest(payload, platform="linux")
    assert manifest.services["greet2"].source == manifest.services["greet"].source
    assert sorted(p.name for p in (payload / "services").iterdir()) == [f"{module}.wasm.gz"]
    assert [p.name for p in (payload / "precompiled").glob("*.cwasm")] == [f"{module}.cwasm"]
    with xvfb() as display:
        status, result = self_test(folder / "shared-module", display)
    assert status == 0 and result["ok"], result
    assert result["app_checks"]["greet"] == {"ok": True, "detail": "Hello, wvwasi!"}
    assert result["services"]["greet"] == result["services"]["greet2"] == {
        "ok": True, "detail": "ran, exit code 1"}  # no name on stdin: "no name given"


def test_the_deb_ships_one_copy(report: dict[str, Any]):
    listing = subprocess.run(["dpkg-deb", "-c", artefact(report, "deb")], capture_output=True,
                             text=True, check=True).stdout
    assert len(re.findall(r"/app/services/[0-9a-f]{16}\.wasm\.gz\n", listing)) == 1
    assert len(re.findall(r"/app/precompiled/[0-9a-f]{16}\.cwasm\n", listing)) == 1


def test_the_site_downloads_the_module_once_for_both_services(project: Path):
    site = artefact(build(project, "web"), "web")
    [module] = (site / "__wvwasi" / "services").iterdir()
    with site_page(site) as page:
        result = page.evaluate("""async () => {
            const a = await WasiWorker.run('greet', {stdin: 'one'});
            const b = await WasiWorker.run('greet2', {stdin: 'two'});
            return {a: a.stdout, b: b.stdout,
                    fetched: performance.getEntriesByType('resource').map((e) => e.name)
                        .filter((name) => name.includes('/services/'))};
        }""")
    assert result["a"].startswith("Hello, one") and result["b"].startswith("Hello, two"), result
    assert [name.rsplit("/", 1)[1] for name in result["fetched"]] == [module.name]

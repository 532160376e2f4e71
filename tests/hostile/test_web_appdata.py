"""Issue 23: on the web build, `$APPDATA` preopened bare or two levels deep (`$APPDATA/a/b`) never
reached the origin private file system (OPFS): the site's key was `.` or `a/b`, which no OPFS
folder name can be, so every save failed with only a console warning and the files were gone
after a reload. Real headless Chromium, a site written by packager/web.py; one level deep
(`$APPDATA/one`, which worked before) is the control."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser import chromium
from projects import write_project

from wvwasi.packager.web import SiteServer, write_site
from wvwasi.runtime.manifest import WEB, load_manifest

pytestmark = pytest.mark.timeout(180)

DEPTHS = {"bare": "$APPDATA", "one": "$APPDATA/one", "deep": "$APPDATA/a/b"}


@pytest.fixture(scope="module")
def site_url(tmp_path_factory: pytest.TempPathFactory,
             wasm_fixture: Callable[[str], Path]) -> Iterator[str]:
    base = tmp_path_factory.mktemp("web-appdata")
    services = {}
    for name, host in DEPTHS.items():
        preopens = [{"guest": "/d", "host": host, "mode": "rw"}]
        services[f"write_{name}"] = {"source": "write_rw", "kind": "task", "preopens": preopens}
        services[f"read_{name}"] = {"source": "readfile", "kind": "task", "preopens": preopens}
    root = write_project(base / "app", services, resolve_wasm=wasm_fixture)
    server = SiteServer(write_site(load_manifest(root, platform=WEB), base / "site"))
    try:
        yield server.start()
    finally:
        server.close()


def test_appdata_at_every_depth_persists_across_a_reload(site_url: str) -> None:
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        warnings: list[str] = []
        page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
        page.goto(site_url)
        for name in DEPTHS:
            out = page.evaluate("""async ([name]) => (await WasiWorker.run('write_' + name,
                {args: ['/d/kept.txt', 'kept ' + name]})).stdout""", [name])
            assert out == f"kept {name}"
        page.wait_for_timeout(500)  # saves run after each change, in order
        page.close()
        again = context.new_page()
        again.goto(site_url)
        for name in DEPTHS:
            result = again.evaluate("""async ([name]) => {
                const r = await WasiWorker.run('read_' + name, {args: ['/d/kept.txt']});
                return [r.exitCode, r.stdout, r.stderr];
            }""", [name])
            assert result == [0, f"kept {name}", ""], name
        context.close()
    assert not [w for w in warnings if "could not save" in w], warnings

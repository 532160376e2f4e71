"""`wvwasi build --format web`, `wvwasi serve --web` and `wvwasi check --platform web`.

The Notes example is built as a static site by the real CLI and used through its UI in headless
Chromium (Playwright): every service runs in the page's Workers with the browser engine, notes
persist in the browser's storage across a reload, a crashing service is reported in the page.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, site_page
from playwright.sync_api import Page
from webwasi import static_site, webkit_window

from wvwasi.packager.web import HEADERS, SiteServer
from wvwasi.runtime.host.modules import content_name
from wvwasi.runtime.manifest import load_manifest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "notes"
WVWASI = [sys.executable, "-m", "wvwasi"]
STEP = 30_000  # ms: generous bound for one UI step under a loaded machine


def wvwasi(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WVWASI, *args], capture_output=True, text=True, timeout=300,
                          **kwargs)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("notes") / "notes"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("build", "dist"))
    built = wvwasi("build", str(root), "--format", "web")
    assert built.returncode == 0, built.stdout + built.stderr
    return root / "dist" / "notes-0.1.0-web"


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    server = SiteServer(site)
    try:
        yield server.start()
    finally:
        server.close()


def test_site_layout(site: Path) -> None:
    own = site / "__wvwasi"
    for name in ("wvwasi.js", "wasi-core.js", "wasi-worker.js", "wasi-engine.js", "wasi-web.js",
                 "wasi-wire.js"):
        assert (own / name).is_file(), name
    services = load_manifest(site.parent.parent, platform="web").services.values()
    assert sorted(p.name for p in (own / "services").iterdir()) == sorted(
        {content_name(s.source) for s in services})
    assert '<script src="__wvwasi/wvwasi.js"></script>' in (site / "index.html").read_text()
    headers = (site / "_headers").read_text()
    assert headers.startswith("/*\n")
    for key, value in HEADERS.items():
        assert f"  {key}: {value}\n" in headers
    assert (site / "coi-sw.js").is_file()
    config = json.loads(re.search(r"__wvwasiConfig = (.*);\n", (own / "wvwasi.js").read_text())[1])
    store = config["web"]["services"]["store"]
    assert store["preopens"] == [{"guest": "/notes", "mode": "rw", "source": "appdata",
                                  "key": "notes"}]
    assert config["services"]["export"]["userGrants"] is True  # the browser's folder picker
    assert config["web"]["window"] == {"title": "Notes", "width": 1100, "height": 720}


def test_server_sends_isolation_headers(served: str) -> None:
    with urllib.request.urlopen(served) as response:
        for key, value in HEADERS.items():
            assert response.headers[key] == value


def _open(context: Any, url: str) -> Page:
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("document.querySelector('#note-list') !== null")
    return page


def test_notes_works_in_the_browser(served: str) -> None:
    with chromium() as browser:
        context = browser.new_context()
        page = _open(context, served)
        assert page.evaluate("crossOriginIsolated") is True
        page.fill("#text", "Groceries\nMilk and bread. Eggs!")
        page.click("#save")
        page.wait_for_function("[...document.querySelectorAll('#note-list .title')]"
                               ".some((e) => e.textContent === 'Groceries')", timeout=STEP)
        page.wait_for_function("document.getElementById('st-words').textContent === '5'",
                               timeout=STEP)
        assert page.text_content("#st-sentences") == "2"

        page.click('[data-tab="image"]')
        pixel = ("[...document.getElementById('canvas').getContext('2d')"
                 ".getImageData(0, 0, 1, 1).data]")
        before = page.evaluate(pixel)
        page.click('[data-op="2"]')
        page.wait_for_function("document.getElementById('image-state').textContent"
                               ".startsWith('Filtered')", timeout=STEP)
        assert page.evaluate(pixel) == [255 - before[0], 255 - before[1], 255 - before[2],
                                        before[3]]

        page.click("#crash")
        page.wait_for_function("!document.getElementById('banner').hidden", timeout=STEP)
        banner = page.text_content("#banner-text")
        assert "trapped" in banner or "crash" in banner, banner
        page.wait_for_function("document.getElementById('log').textContent"
                               ".includes('crash requested')", timeout=STEP)

        # export: the browser's folder picker (stood in for by a folder of the origin's
        # private file system, a real FileSystemDirectoryHandle) and a service writing into it
        page.evaluate("""async () => {
            const root = await navigator.storage.getDirectory();
            const dir = await root.getDirectoryHandle('exported', {create: true});
            window.showDirectoryPicker = async () => dir;
            window.exported = async () => {
                const out = {};
                for await (const [name, h] of dir.entries()) {
                    out[name] = await (await h.getFile()).text();
                }
                return out;
            };
        }""")
        page.click("#export")
        page.wait_for_function("document.getElementById('export-result').textContent"
                               ".includes('exported to')", timeout=STEP)
        assert page.text_content("#export-result") == "1 note exported to “exported”"
        assert page.evaluate("exported()") == {"Groceries.txt": "Groceries\nMilk and bread. Eggs!"}

        # the note was saved by the store service into $APPDATA = the origin's storage (OPFS)
        page.close()
        again = _open(context, served)
        again.wait_for_function("[...document.querySelectorAll('#note-list .title')]"
                                ".some((e) => e.textContent === 'Groceries')", timeout=STEP)
        context.close()


def _project(root: Path, services: str) -> Path:
    root.mkdir()
    (root / "ui").mkdir()
    (root / "ui" / "index.html").write_text("<!doctype html><title>x</title>")
    (root / "wvwasi.toml").write_text(
        '[app]\nname = "X"\nidentifier = "dev.wvwasi.x"\nversion = "1.0.0"\n' + services)
    return root


@pytest.mark.parametrize(("service", "key", "why"), [
    ('preopens = [{ guest = "/d", host = "$DOCUMENTS", mode = "ro" }]',
     "services.svc.preopens[0].host", "folder of the user's machine"),
    ('preopens = [{ guest = "/d", host = "/etc", mode = "ro" }]',
     "services.svc.preopens[0].host", "folder of the user's machine"),
    ('preopens = [{ guest = "/d", host = "ui", mode = "rw" }]\n[bundle]\nresources = ["ui"]',
     "services.svc.preopens[0].host", "read-only"),
    ('[page]\npreopens = [{ guest = "/d", host = "$APPDATA/d", mode = "rw" }]',
     "page.preopens[0]", "cannot lend folders"),
])
def test_check_refuses_what_a_browser_cannot_give(
    tmp_path: Path, wasm_fixture: Callable[[str], Path], service: str, key: str, why: str
) -> None:
    shutil.copy(wasm_fixture("echo_lines"), tmp_path / "svc.wasm")
    root = _project(tmp_path / "app", f'[services.svc]\nsource = "../svc.wasm"\n{service}\n')
    native = wvwasi("check", str(root))
    assert native.returncode == 0, native.stderr
    web = wvwasi("check", str(root), "--platform", "web")
    assert web.returncode == 2
    (line,) = [ln for ln in web.stderr.splitlines() if ln.startswith("error:")]
    assert f"wvwasi.toml: {key}: " in line and why in line, line
    build = wvwasi("build", str(root), "--format", "web")
    assert build.returncode != 0 and key in build.stderr + build.stdout
    assert not (root / "dist").exists()


def test_check_accepts_the_mapped_folders(tmp_path: Path,
                                          wasm_fixture: Callable[[str], Path]) -> None:
    shutil.copy(wasm_fixture("echo_lines"), tmp_path / "svc.wasm")
    root = _project(tmp_path / "app", (  # user_grants: the browser's folder picker
        '[services.svc]\nsource = "../svc.wasm"\nuser_grants = true\npreopens = [\n'
        '  { guest = "/data", host = "$APPDATA/d", mode = "rw" },\n'
        '  { guest = "/cache", host = "$CACHE", mode = "rw" },\n'
        '  { guest = "/ui", host = "ui", mode = "ro" },\n'
        '  { guest = "/res", host = "$RESOURCES/ui", mode = "ro" },\n]\n'))
    web = wvwasi("check", str(root), "--platform", "web")
    assert web.returncode == 0, web.stderr
    assert "checked for web" in web.stdout


def test_serve_web_serves_the_site_until_stopped(tmp_path: Path,
                                                 wasm_fixture: Callable[[str], Path]) -> None:
    shutil.copy(wasm_fixture("echo_lines"), tmp_path / "svc.wasm")
    root = _project(tmp_path / "app", '[services.svc]\nsource = "../svc.wasm"\n')
    proc = subprocess.Popen([*WVWASI, "serve", str(root), "--web"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert url, line
        module = content_name(tmp_path / "svc.wasm")
        with urllib.request.urlopen(url[1] + f"__wvwasi/services/{module}") as response:
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert response.read() == wasm_fixture("echo_lines").read_bytes()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Stopped." in out


def test_notes_site_works_in_webkitgtk(site: Path, tmp_path: Path) -> None:
    """The same site in the Linux app window's engine (pywebview GTK under Xvfb): the page's own
    self-test (stats task, store background service, filter frames service) reports back."""
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    (copy / "report.js").write_text(
        "addEventListener('load', async () => {\n"
        "  let body;\n"
        "  try { body = {isolated: crossOriginIsolated, checks: await wvwasiSelfTest()}; }\n"
        "  catch (e) { body = {error: String(e)}; }\n"
        "  fetch('/report', {method: 'POST', body: JSON.stringify(body)});\n"
        "});\n")
    index = copy / "index.html"
    html = index.read_text().replace("</head>", '<script src="report.js"></script></head>')
    index.write_text(html)
    with static_site(copy) as served, webkit_window(served.origin + "/", tmp_path):
        report = served.results.get(timeout=120)
    assert report.get("isolated") is True, report
    assert {k: v["ok"] for k, v in report["checks"].items()} == {
        "stats": True, "store": True, "filter": True}, report


def test_site_leaves_out_what_the_bridge_does_not_serve(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t-value")
    root = _project(tmp_path / "app", "")
    ui = root / "ui"
    (ui / "page.js").write_text("// app code")
    (ui / "alias.js").symlink_to("page.js")
    (ui / "leak.txt").symlink_to(secret)
    (ui / ".env").write_text("TOKEN=1")
    built = wvwasi("build", str(root), "--format", "web")
    assert built.returncode == 0, built.stderr
    site = root / "dist" / "x-1.0.0-web"
    assert (site / "alias.js").read_text() == "// app code"
    assert not (site / "leak.txt").exists()
    assert not (site / ".env").exists()
    assert "s3cr3t-value" not in "".join(p.read_text(errors="ignore")
                                    for p in site.rglob("*") if p.is_file())


def test_a_site_without_its_engine_says_so(site: Path, tmp_path: Path) -> None:
    broken = tmp_path / "site"
    shutil.copytree(site, broken)
    (broken / "__wvwasi" / "wasi-web.js").unlink()
    with site_page(broken) as page:
        result = page.evaluate("""async () => {
            const w = new WasiWorker('filter');
            const error = new Promise((r) => { w.onerror = (e) => r(e.error); });
            const run = WasiWorker.run('stats', {stdin: 'x'}).catch((e) => e);
            const [e1, e2] = [await error, await run];
            return [[e1.kind, e1.message], [e2.kind, e2.message]];
        }""")
    for kind, message in result:
        assert kind == "bridge"
        assert "wasi-web.js) did not load" in message

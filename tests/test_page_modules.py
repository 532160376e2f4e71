"""Page-supplied modules (`new WasiWorker(url | Module | bytes)`, `WasiWorker.register`) in real
headless Chromium, run by the browser engine in the page's Workers: once on a page of the
desktop app's native bridge (which serves the engine at /__wvwasi/ but runs nothing the page
supplies) and once on the same project built as a web site. The page fetches the C fixtures
from a folder of its UI.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser import PAGES_DIR, chromium, served_app
from playwright.sync_api import Browser, BrowserContext, Page, Route
from projects import write_project

from wvwasi.packager.web import SiteServer, write_site
from wvwasi.runtime.manifest import WEB, load_manifest

pytestmark = pytest.mark.timeout(180)

MODULES = ("env_args", "echo_lines", "readfile", "copyfile", "needs_host")
SERVICES = {"echo": {"source": "echo_lines", "kind": "dedicated"}}


def add_modules(ui: Path, wasm_fixture: Callable[[str], Path]) -> None:
    """tests/pages/ plus ui/mods/: the fixtures as page-supplied modules and a non-wasm file."""
    shutil.copytree(PAGES_DIR, ui, dirs_exist_ok=True)
    (ui / "mods").mkdir(exist_ok=True)
    for name in MODULES:
        shutil.copyfile(wasm_fixture(name), ui / "mods" / f"{name}.wasm")
    (ui / "mods" / "not-wasm.txt").write_text("this is not a WebAssembly module\n")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module", params=["app", "web"])
def opener(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           wasm_fixture: Callable[[str], Path],
           module_cache_dir: Path) -> Iterator[Callable[[BrowserContext], Page]]:
    """Opens the test page in a context: on the desktop app's bridge, or on the web site."""
    base = tmp_path_factory.mktemp(f"page-modules-{request.param}")
    root = write_project(base / "app", SERVICES, resolve_wasm=wasm_fixture)
    if request.param == "app":
        add_modules(load_manifest(root).ui.dir, wasm_fixture)
        with served_app(root, dirs=base / "dirs", cache=module_cache_dir,
                        copy_pages=False) as served:
            yield served.open
        return
    manifest = load_manifest(root, platform=WEB)
    add_modules(manifest.ui.dir, wasm_fixture)
    server = SiteServer(write_site(manifest, base / "site"))
    url = server.start()
    try:
        def open_page(context: BrowserContext) -> Page:
            page = context.new_page()
            page.goto(url)
            return page
        yield open_page
    finally:
        server.close()


@pytest.fixture
def page(browser: Browser, opener: Callable[[BrowserContext], Page]) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield opener(context)
    finally:
        context.close()


def test_register_once_then_100_spawns(page: Page) -> None:
    result = page.evaluate("""async () => {
        const before = WasiService.compiles;
        const svc = await WasiWorker.register('mods/env_args.wasm');
        const outputs = [];
        for (let batch = 0; batch < 10; batch++) {
            outputs.push(...await Promise.all(Array.from({length: 10}, (_, j) => {
                const w = svc.spawn({args: [`n${batch * 10 + j}`], env: {K: 'v'}});
                return harness.ended(w);
            })));
        }
        return {
            compiles: WasiService.compiles - before,
            name: svc.name,
            ok: outputs.every((o, i) => o.code === 0 && o.kind === null &&
                JSON.stringify(o.messages) ===
                JSON.stringify(['arg[0]=env_args', `arg[1]=n${i}`, 'env:K=v'])),
            first: outputs[0],
            isolated: crossOriginIsolated,
        };
    }""")
    assert result["first"] == {"code": 0, "kind": None, "errors": [],
                               "messages": ["arg[0]=env_args", "arg[1]=n0", "env:K=v"]}
    assert result == {"compiles": 1, "name": "env_args", "ok": True, "first": result["first"],
                      "isolated": True}


def test_url_module_and_bytes_post_messages_and_run(page: Page) -> None:
    result = page.evaluate("""async () => {
        const w = new WasiWorker('mods/echo_lines.wasm');
        const got = harness.collect(w, 2);
        w.postMessage('one');
        w.postMessage('two');
        const echoed = await got;
        w.terminate();
        const bytes = await (await fetch('mods/env_args.wasm')).arrayBuffer();
        const fromBytes = await WasiWorker.run(new Uint8Array(bytes), {args: ['x'], name: 'e'});
        const module = await WebAssembly.compile(bytes);
        const fromModule = await WasiWorker.run(module, {args: ['y']});
        const native = new WasiWorker('echo'); // a name still means a manifest service
        const back = harness.collect(native, 1);
        native.postMessage('native');
        const [n] = await back;
        native.terminate();
        return {echoed, bytes: fromBytes.stdout, module: fromModule.stdout, n,
                lookup: harness.thrown(() => new WasiWorker('nope'))?.kind};
    }""")
    assert result == {"echoed": ["one", "two"], "bytes": "arg[0]=e\narg[1]=x\n",
                      "module": "arg[0]=module\narg[1]=y\n", "n": "native",
                      "lookup": "lookup"}


def test_blob_and_bytes_files_and_stdout_stream(page: Page) -> None:
    result = page.evaluate("""async () => {
        const svc = await WasiWorker.register('mods/readfile.wasm');
        const blob = await svc.run({args: ['/in/note.txt'],
                                    vfs: {'/in/note.txt': new Blob(['from a ', 'blob'])}});
        const bytes = await svc.run({args: ['/d/b'], vfs: {'/d/b': new Uint8Array([104, 105])}});
        const missing = await svc.run({args: ['/in/other'], vfs: {'/in/note.txt': 'x'}});
        const chunks = [];
        const sink = new WritableStream({write: (c) => { chunks.push(...c); }});
        const raw = await WasiWorker.register('mods/readfile.wasm', {ipc: 'stream'});
        const w = raw.spawn({args: ['/in/t'], vfs: {'/in/t': 'to a stream'}, stdout: sink});
        const end = await harness.ended(w);
        return {blob: blob.stdout, bytes: bytes.stdout, missing: [missing.exitCode, missing.stderr],
                piped: new TextDecoder().decode(new Uint8Array(chunks)), code: end.code};
    }""")
    assert result == {"blob": "from a blob", "bytes": "hi",
                      "missing": [1, "open /in/other: ENOENT\n"], "piped": "to a stream",
                      "code": 0}


def test_vfs_streams_both_ways_and_the_guest_blocks_for_data(page: Page) -> None:
    result = page.evaluate("""async () => {
        let feed;
        const source = new ReadableStream({start: (c) => { feed = c; }});
        const received = [];
        const sink = new WritableStream({write: (c) => { received.push(harness.text(c)); }});
        const w = new WasiWorker('mods/copyfile.wasm', {args: ['/in/slow', '/out/copy'],
            vfs: {'/in/slow': source, '/out/copy': sink}});
        const ended = harness.ended(w);
        let exited = false;
        ended.then(() => { exited = true; });
        feed.enqueue(new TextEncoder().encode('first '));
        await harness.until(() => received.length === 1);
        await new Promise((r) => setTimeout(r, 300));
        const waiting = !exited && received.length === 1; // blocked in read() for more
        feed.enqueue('second');
        await harness.until(() => received.length === 2);
        feed.close();
        const end = await ended;
        return {received, waiting, code: end.code, messages: end.messages};
    }""")
    assert result == {"received": ["first ", "second"], "waiting": True, "code": 0,
                      "messages": ["12"]}


def test_bad_modules_are_wasi_errors_with_a_kind(page: Page) -> None:
    result = page.evaluate("""async () => {
        const w = new WasiWorker('mods/not-wasm.txt');
        const spawned = await harness.ended(w);
        return {
            notWasm: await harness.outcome(WasiWorker.register('mods/not-wasm.txt')),
            missing: await harness.outcome(WasiWorker.register('mods/absent.wasm')),
            imports: await harness.outcome(WasiWorker.run('mods/needs_host.wasm')),
            spawned,
            badVfs: harness.thrown(() => new WasiWorker('mods/readfile.wasm', {vfs: {'rel': 'x'}})),
            badOption: harness.thrown(() => new WasiWorker('mods/readfile.wasm', {files: {}})),
        };
    }""")
    assert result["notWasm"]["kind"] == "start"
    assert "not a WebAssembly module" in result["notWasm"]["message"]
    assert result["missing"]["kind"] == "start" and "HTTP 404" in result["missing"]["message"]
    assert result["imports"]["kind"] == "start"
    assert "env.host_magic" in result["imports"]["message"]
    assert result["spawned"]["code"] is None and result["spawned"]["kind"] == "start"
    assert [e["kind"] for e in result["spawned"]["errors"]] == ["start"]
    assert result["badVfs"]["name"] == "TypeError"
    assert "unknown option 'files'" in result["badOption"]["message"]


def test_a_stream_that_errors_mid_read_ends_the_worker(page: Page) -> None:
    result = page.evaluate("""async () => {
        let feed;
        const source = new ReadableStream({start: (c) => { feed = c; }});
        const received = [];
        const sink = new WritableStream({write: (c) => { received.push(c); }});
        const w = new WasiWorker('mods/copyfile.wasm', {args: ['/in/x', '/out/y'],
            vfs: {'/in/x': source, '/out/y': sink}});
        const ended = harness.ended(w);
        feed.enqueue(new Uint8Array([65]));
        await harness.until(() => received.length === 1);
        feed.error(new Error('the network went away'));
        return ended;
    }""")
    assert result["code"] is None and result["kind"] == "io"
    assert [e["kind"] for e in result["errors"]] == ["io"]
    assert "the network went away" in result["errors"][0]["message"]


def strip_isolation(route: Route) -> None:
    if route.request.resource_type != "document":
        route.continue_()
        return
    response = route.fetch()
    headers = {k: v for k, v in response.headers.items()
               if k.lower() not in ("cross-origin-opener-policy", "cross-origin-embedder-policy")}
    route.fulfill(response=response, headers=headers)


def test_a_page_without_isolation_gets_isolation_errors_where_blocking_is_needed(
        browser: Browser, opener: Callable[[BrowserContext], Page]) -> None:
    # no service workers: the web site's fallback (coi-sw.js) would add the headers back
    context = browser.new_context(service_workers="block")
    try:
        page = opener(context)  # launched (the app's session cookie and key), then reloaded
        context.route("**/*", strip_isolation)  # without COOP/COEP
        page.goto(page.url)
        result = page.evaluate("""async () => {
            const svc = await WasiWorker.register('mods/readfile.wasm');
            const w = svc.spawn({args: ['/in/a'], vfs: {'/in/a': 'x'}});
            const spawned = await harness.ended(w);
            const stream = await harness.outcome(svc.run({args: ['/in/a'],
                vfs: {'/in/a': new ReadableStream({start: (c) => c.close()})}}));
            const run = await svc.run({args: ['/in/a'], vfs: {'/in/a': 'fixed input'}});
            return {isolated: crossOriginIsolated, spawned: spawned.kind,
                    stream: stream.kind, run: run.stdout};
        }""")
    finally:
        context.close()
    assert result == {"isolated": False, "spawned": "isolation", "stream": "isolation",
                      "run": "fixed input"}


@pytest.mark.parametrize("delay_ms", [300, 0], ids=["blocked-in-read", "before-start"])
def test_terminate_stops_a_guest_blocked_on_a_stream_and_cancels_it(page: Page,
                                                                     delay_ms: int) -> None:
    """Terminated while blocked in its read, or at once, before it was compiled and started:
    the same `terminated` exit, no error event, and the page's stream is cancelled."""
    result = page.evaluate("""async (delay) => {
        let cancelled = false;
        const source = new ReadableStream({cancel: () => { cancelled = true; }});
        const w = new WasiWorker('mods/readfile.wasm', {args: ['/in/never'],
                                                        vfs: {'/in/never': source}});
        const ended = harness.ended(w);
        if (delay) await new Promise((r) => setTimeout(r, delay));
        w.terminate();
        const end = await ended;
        await harness.until(() => cancelled);
        return {code: end.code, kind: end.kind, errors: end.errors.length, cancelled};
    }""", delay_ms)
    assert result == {"code": None, "kind": "terminated", "errors": 0, "cancelled": True}


def test_page_modules_in_webkitgtk(tmp_path: Path, wasm_fixture: Callable[[str], Path]) -> None:
    """tests/web/page-modules.js on a web build in a real pywebview GTK window (WebKitGTK, the
    Linux app window's engine, under Xvfb)."""
    from webwasi import PAGE_DIR, static_site, webkit_window

    root = write_project(tmp_path / "app", SERVICES, resolve_wasm=wasm_fixture)
    manifest = load_manifest(root, platform=WEB)
    add_modules(manifest.ui.dir, wasm_fixture)
    for name in ("page-modules.html", "page-modules.js"):
        shutil.copyfile(PAGE_DIR / name, manifest.ui.dir / name)
    site = write_site(manifest, tmp_path / "site")
    with static_site(site) as served, webkit_window(served.origin + "/page-modules.html",
                                                    tmp_path / "work"):
        r = served.results.get(timeout=120)
    assert r == {"isolated": True, "spawns": {"compiles": 1, "ok": True},
                 "blob": "from a blob",
                 "streams": {"code": 0, "kind": None, "messages": ["12"],
                             "received": ["first ", "second"]},
                 "notWasm": "start"}


def test_host_folder_options_are_checked_and_need_the_desktop_app(
        page: Page, request: pytest.FixtureRequest) -> None:
    result = page.evaluate("""async () => ({
        overlap: harness.thrown(() => new WasiWorker('mods/readfile.wasm',
          {preopens: ['/data'], vfs: {'/data/x': 'x'}})),
        badItem: await harness.outcome(WasiWorker.run('mods/readfile.wasm', {preopens: [5]})),
        unknown: await harness.outcome(WasiWorker.run('mods/readfile.wasm',
          {preopens: ['/nope']})),
    })""")
    assert result["overlap"]["name"] == "TypeError" and "inside host folder" in \
        result["overlap"]["message"]
    assert result["badItem"]["name"] == "TypeError"
    # the desktop app has no [page] preopens entry "/nope"; a web page cannot lend folders at all
    web = request.node.callspec.params["opener"] == "web"
    assert result["unknown"]["kind"] == ("unavailable" if web else "permission")

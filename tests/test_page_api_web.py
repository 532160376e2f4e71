"""The page API tests of tests/test_page_api.py, run unchanged against the same project built as
a static web site (packager/web.py): the same page code, its services in the page's Workers.

Tests that need the desktop app (folder pickers, the bridge's session and reload) or look at
the native host (its spy) are left out or have a web twin here; docs/web.md lists the
differences.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import PAGES_DIR, chromium
from playwright.sync_api import Browser, Page
from projects import write_project
from test_page_api import (  # noqa: F401 (collected here, with this module's fixtures)
    SERVICES,
    test_args_env_and_files_reach_a_dedicated_worker,
    test_background_service_takes_no_options,
    test_exit_code_reaches_the_exit_event,
    test_files_option_gives_one_instance_read_only_files,
    test_frames_carry_binary_messages_of_any_view,
    test_instance_limit_is_reported,
    test_lines_carry_any_text_unchanged_and_refuse_lone_surrogates,
    test_lines_keep_order_over_10k_pipelined_messages,
    test_manifest_preopens_and_scratch,
    test_outputs_are_bounded_and_checked_like_files,
    test_outputs_hand_written_files_back_to_the_page,
    test_post_message_sends_a_copy_the_page_may_reuse_at_once,
    test_run_appends_args_and_env,
    test_run_collects_output_for_every_stdin_type,
    test_run_resolves_nonzero_exits_and_rejects_traps_and_timeouts,
    test_stderr_goes_to_console_warn_and_the_stderr_stream,
    test_stdin_and_stdout_streams,
    test_stdout_stream_of_a_lines_service_is_its_raw_output,
    test_stream_mode_echoes_every_byte,
    test_trap_fires_error_then_exit,
    test_unknown_services_and_options_are_actionable_errors,
    test_wrong_message_types_throw_type_errors,
)

from wvwasi.packager.web import SiteServer, write_site
from wvwasi.runtime.bridge.protocol import WINDOW
from wvwasi.runtime.manifest import WEB, load_manifest

pytestmark = pytest.mark.timeout(120)

#: Services a web site cannot have: user grants (refused by `check --platform web`) and a
#: module that does not exist (the build refuses it).
DESKTOP_ONLY = ("picked", "picked_rw", "missing")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def site_url(tmp_path_factory: pytest.TempPathFactory,
             wasm_fixture: Callable[[str], Path]) -> Iterator[str]:
    base = tmp_path_factory.mktemp("page-api-web")
    services = {k: v for k, v in SERVICES.items() if k not in DESKTOP_ONLY}
    root = write_project(base / "app", services, resolve_wasm=wasm_fixture)
    (root / "data").mkdir()
    (root / "data" / "note.txt").write_text("from the manifest\n")
    manifest = load_manifest(root, platform=WEB)
    shutil.copytree(PAGES_DIR, manifest.ui.dir, dirs_exist_ok=True)
    server = SiteServer(write_site(manifest, base / "site"))
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def page(browser: Browser, site_url: str) -> Iterator[Page]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site_url)
        yield page
    finally:
        context.close()


def test_the_page_runs_services_in_its_workers(page: Page) -> Any:
    assert page.evaluate("crossOriginIsolated") is True
    result = page.evaluate("""async () => {
        const w = new WasiWorker('echo');
        const got = harness.collect(w, 1);
        w.postMessage('in the browser');
        const [data] = await got;
        w.terminate();
        return {data, sockets: performance.getEntriesByType('resource')
            .filter((e) => e.name.startsWith('ws')).length};
    }""")
    assert result == {"data": "in the browser", "sockets": 0}


def test_background_service_is_one_instance_per_tab(browser: Browser, page: Page,
                                                    site_url: str) -> None:
    assert page.evaluate("""async () => {
        window.hubA = new WasiWorker('hub');
        window.hubB = new WasiWorker('hub');
        return await harness.connected(hubA, 'a') && await harness.connected(hubB, 'b');
    }""")
    context = browser.new_context()
    try:
        other = context.new_page()
        other.goto(site_url)
        assert other.evaluate("""async () => {
            window.hubC = new WasiWorker('hub');
            window.seenC = [];
            hubC.onmessage = (e) => seenC.push(e.data);
            return harness.connected(hubC, 'c');
        }""")
        result = page.evaluate("""async () => {
            const a = harness.waitFor(hubA, 'hello tab');
            const b = harness.waitFor(hubB, 'hello tab');
            hubB.postMessage('hello tab');
            return [await a, await b];
        }""")
        assert result == ["hello tab", "hello tab"]
        # the other tab has its own instance: it saw only its own traffic
        assert other.evaluate("""async () => {
            const got = harness.waitFor(hubC, 'mine');
            hubC.postMessage('mine');
            await got;
            return seenC.includes('hello tab');
        }""") is False
        page.evaluate("async () => { const e = harness.ended(hubA); hubA.terminate(); await e; }")
        assert page.evaluate("""async () => {
            const got = harness.waitFor(hubB, 'still here');
            hubB.postMessage('still here');
            return got;
        }""") == "still here"
    finally:
        context.close()


def test_output_is_paused_while_the_page_does_not_read(page: Page) -> None:
    page.evaluate("""() => {
        const w = window.flood = new WasiWorker('flood');
        window.floodReceived = 0;
        window.floodEnded = false;
        w.addEventListener('message', (e) => { window.floodReceived += e.data.byteLength; });
        w.addEventListener('exit', () => { window.floodEnded = true; });
        window.floodOut = w.stdout;  // a stream nobody reads yet: it fills up, then pauses
    }""")
    page.evaluate("harness.until(() => window.floodReceived > 0)")
    page.wait_for_timeout(1000)  # time in which an unpaused 8 MiB flood would arrive
    assert page.evaluate("window.floodEnded") is False  # blocked writing stdout
    # As on the desktop: at most the stream's 1 MiB high-water mark (plus the chunk that crossed
    # it) and one window in flight. An unpaused flood would deliver 8 MiB.
    assert page.evaluate("window.floodReceived") <= 3 * WINDOW
    result = page.evaluate("""async () => {
        const ended = harness.ended(window.flood);
        const bytes = await harness.readAll(window.floodOut);
        return {size: bytes.length, pattern: bytes.every((b, i) => b === i % 251),
                code: (await ended).code};
    }""")
    assert result == {"size": 8 << 20, "pattern": True, "code": 0}


def test_notify_uses_the_browser_notification_api(browser: Browser, site_url: str) -> None:
    """On the web `wvwasi.notify` is the browser's Notification API: shown once the user
    allows it (the title and body reach the real `Notification`), `permission` when not."""
    spy = """() => {
        globalThis.shown = [];
        globalThis.Notification = class extends Notification {
            constructor(title, options) {
                super(title, options);
                shown.push([title, options.body]);
            }
        };
    }"""
    call = "wvwasi.notify({title: 'Saved', body: 'on the web'}).then(() => 'ok', (e) => e.kind)"
    for permissions, answer, shown in ((["notifications"], "ok", [["Saved", "on the web"]]),
                                       ([], "permission", [])):
        context = browser.new_context()
        try:
            context.grant_permissions(permissions, origin=site_url.rstrip("/"))
            page = context.new_page()
            page.goto(site_url)
            page.evaluate(spy)
            assert page.evaluate(call) == answer
            assert page.evaluate("shown") == shown
        finally:
            context.close()

"""coi-sw.js, the fallback for static hosts that cannot set headers: a web build served by a plain
static server WITHOUT Cross-Origin-Opener/Embedder-Policy, in real headless Chromium. The page is
not isolated at first; wvwasi.js registers the service worker and reloads once; then the page is
cross-origin isolated and a dedicated service (which needs blocking stdin) runs.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from browser import chromium
from projects import write_project

from wvwasi.packager.web import write_site
from wvwasi.runtime.manifest import WEB, load_manifest

pytestmark = pytest.mark.timeout(120)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    """A plain static server: no header of its own, .js and .wasm with their types."""

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        name = os.fspath(path)
        if name.endswith(".js"):
            return "text/javascript"
        if name.endswith(".wasm"):
            return "application/wasm"
        return super().guess_type(path)

    def log_message(self, *args: object) -> None:
        pass


def test_the_service_worker_makes_a_headerless_site_isolated(
        tmp_path: Path, wasm_fixture: Callable[[str], Path]) -> None:
    root = write_project(tmp_path / "app", {"echo": {"source": "echo_lines",
                                                     "kind": "dedicated"}},
                         resolve_wasm=wasm_fixture)
    site = write_site(load_manifest(root, platform=WEB), tmp_path / "site")
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with chromium() as browser:
            context = browser.new_context()
            page = context.new_page()
            first = page.request.get(url)  # the host really sends no isolation headers
            assert "cross-origin-opener-policy" not in first.headers
            loads: list[str] = []
            page.on("load", lambda p: loads.append(p.url))
            page.goto(url)
            page.wait_for_function("() => globalThis.crossOriginIsolated === true",
                                   timeout=30000)
            assert len(loads) >= 2  # the first load, then the reload under the service worker
            result = page.evaluate("""() => new Promise((resolve) => {
              const w = new WasiWorker('echo');
              w.onmessage = (e) => {
                resolve({echo: e.data, sw: !!navigator.serviceWorker.controller});
                w.terminate();
              };
              w.onerror = (e) => resolve({error: e.error.kind + ': ' + e.message});
              w.postMessage('hello through coi-sw');
            })""")
            assert result == {"echo": "hello through coi-sw", "sw": True}
            context.close()
    finally:
        server.shutdown()
        server.server_close()

"""How the bridge serves the UI folder: MIME types, isolation headers, the page-API tag, and no
way out of the folder (traversal, symlinks, dotfiles, listings)."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser import PAGES_DIR, ServedApp, served_app
from projects import write_project
from unix_side import WINDOWS, plant_link, unix_path, unix_shell

from wvwasi.runtime.bridge.static import JS_DIR, SCRIPT_TAG, inject_script

# A hung page or bridge fails its test instead of stalling the whole run.
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory,
    wasm_fixture: Callable[[str], Path],
    module_cache_dir: Path,
) -> Iterator[ServedApp]:
    base = tmp_path_factory.mktemp("static")
    root = write_project(base / "app", {"wc": {"source": "wc"}}, resolve_wasm=wasm_fixture)
    (root / "secret.txt").write_text("outside the UI folder\n")
    ui = root / "ui"
    (ui / "tiny.wasm").write_bytes(wasm_fixture("wc").read_bytes())
    plant_link(root / "secret.txt", ui / "leak.txt")  # under Wine too (symlink_to makes none)
    plant_link(root, ui / "leakdir")
    (ui / "nohead.html").write_text("<p>no head here</p>")
    with served_app(root, dirs=base / "dirs", cache=module_cache_dir) as served:
        yield served


@pytest.fixture(scope="module")
def get(app: ServedApp) -> Callable[[str], tuple[int, dict[str, str], bytes]]:
    """GET a raw target with the session cookie: (status, headers, body)."""
    url = urlsplit(app.url)
    port = int(url.port or 0)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", f"{url.path}?{url.query}")
    resp = conn.getresponse()
    resp.read()
    cookie = resp.getheader("Set-Cookie").split(";", 1)[0]
    conn.close()

    def fetch(target: str) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", target, headers={"Cookie": cookie})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    return fetch


@pytest.mark.parametrize(("target", "mime"), [
    ("/", "text/html; charset=utf-8"),
    ("/index.html", "text/html; charset=utf-8"),
    ("/main.mjs", "text/javascript; charset=utf-8"),
    ("/harness.js", "text/javascript; charset=utf-8"),
    ("/style.css", "text/css; charset=utf-8"),
    ("/icon.svg", "image/svg+xml"),
    ("/tiny.wasm", "application/wasm"),
    ("/nested/notes.txt", "text/plain; charset=utf-8"),
    ("/__wvwasi/wvwasi.js", "text/javascript; charset=utf-8"),
])
def test_mime_types(get: Any, target: str, mime: str) -> None:
    status, headers, _ = get(target)
    assert status == 200
    assert headers["content-type"] == mime
    assert headers["x-content-type-options"] == "nosniff"


def test_files_are_served_byte_for_byte(get: Any, app: ServedApp) -> None:
    ui = app.manifest.ui.dir
    assert get("/tiny.wasm")[2] == (ui / "tiny.wasm").read_bytes()
    assert get("/main.mjs")[2] == (PAGES_DIR / "main.mjs").read_bytes()


@pytest.mark.parametrize("target", ["/", "/nohead.html", "/__wvwasi/nope", "/missing.css"])
def test_every_response_is_isolated_with_a_strict_csp(
    get: Any, app: ServedApp, target: str
) -> None:
    _, headers, _ = get(target)
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    assert headers["cross-origin-resource-policy"] == "same-origin"
    csp = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert app.origin.replace("http://", "ws://") in csp["connect-src"]
    assert csp["object-src"] == "'none'"
    assert csp["frame-ancestors"] == "'none'"


def test_html_gets_the_page_api_tag_once(get: Any) -> None:
    body = get("/index.html")[2]
    assert body.count(b"/__wvwasi/wvwasi.js") == 1
    assert body.index(SCRIPT_TAG) < body.index(b"harness.js")  # before the page's own scripts
    assert get("/nohead.html")[2] == SCRIPT_TAG + b"<p>no head here</p>"
    page_api = get("/__wvwasi/wvwasi.js")[2]
    assert page_api.startswith(b"globalThis.__wvwasiConfig = {")
    assert b'"wc": {"kind": "task", "ipc": "lines"' in page_api
    # the wire module joined in front of wvwasi.js (test_wire.py runs that join)
    assert page_api.endswith((JS_DIR / "wvwasi.js").read_bytes())
    assert b"globalThis.__wvwasiWire = " in page_api
    assert get("/__wvwasi/wvwasi.d.ts")[0] == 200


@pytest.mark.parametrize("html", [
    b"<!doctype html><html><head><title>x</title></head></html>",
    b"<!DOCTYPE html>\n<HTML lang=en><HEAD data-x='1'><title>x</title>",
    b"<!doctype html><title>x</title>",
    b"<html><body>x</body></html>",
    b"plain",
])
def test_inject_script_goes_first_in_head(html: bytes) -> None:
    out = inject_script(html)
    assert out.replace(SCRIPT_TAG, b"", 1) == html
    before = out[: out.index(SCRIPT_TAG)].lower()
    assert b"<title" not in before and b"<body" not in before
    assert inject_script(out) == out


@pytest.mark.parametrize("target", [
    "/../wvwasi.toml",
    "/%2e%2e/wvwasi.toml",
    "/..%2fwvwasi.toml",
    "/nested/../../wvwasi.toml",
    "/nested/%2e%2e/%2e%2e/secret.txt",
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    "/leak.txt",  # a symlink out of the folder
    "/leakdir/secret.txt",
    "/leakdir/wvwasi.toml",
    "/.hidden",
    "/%2ehidden",
    "/nested/",  # a folder without index.html: no listing
    "/nested",
    "/missing.html",
    "/index.html%00.txt",
])
def test_nothing_outside_the_ui_folder_or_hidden_is_served(get: Any, target: str) -> None:
    status, _, body = get(target)
    assert status in (400, 404), target
    assert b"outside the UI folder" not in body
    assert b"[app]" not in body
    assert b"root:" not in body


def test_the_browser_engine_is_served_for_page_supplied_modules(get: Any) -> None:
    """Exactly the engine's modules (runtime/js/wasi-*.js) under /__wvwasi/, nothing else."""
    for name in ("wasi-page.js", "wasi-web.js", "wasi-engine.js", "wasi-worker.js",
                 "wasi-core.js", "wasi-hostfs.js", "wasi-wire.js"):
        status, headers, body = get(f"/__wvwasi/{name}")
        assert (status, headers["content-type"]) == (200, "text/javascript; charset=utf-8")
        assert body == (JS_DIR / name).read_bytes()
        assert headers["cross-origin-embedder-policy"] == "require-corp"
    for target in ("/__wvwasi/coi-sw.js", "/__wvwasi/wasi-nope.js", "/__wvwasi/wasi-core.js.map",
                   "/__wvwasi/..%2Fmanifest.py"):
        assert get(target)[0] == 404



@pytest.mark.skipif(WINDOWS, reason="Wine 8.0 cannot hold this: it follows a Unix symlink when "
                    "opening, even with FILE_OPEN_REPARSE_POINT, and the final path of a handle "
                    "so opened was seen to name the inside file (apparently its name resolved "
                    "again after the open, so a flip back passes the check); real Windows does "
                    "not follow links there and has no Unix shell to swap with")
def test_a_link_swapped_in_while_files_are_served_never_serves_what_is_outside(
        get: Any, app: ServedApp) -> None:
    """Another process keeps replacing `swap.txt` (a regular file in the UI folder) with a link
    out of it and back while it is requested: each answer is the inside file or a 404, never
    the outside one (the file is served from the very handle that was checked, not opened again
    by name). Linux only: Windows serves through the same descriptor code, and its opening
    beneath the folder handle is tested against planted links under Wine."""
    ui, outside = app.manifest.ui.dir, app.manifest.root / "secret.txt"
    inside = b"inside the UI folder\n" * 4096  # not HTML: served by FileResponse
    (ui / ".inside").write_bytes(inside)
    (ui / "swap.txt").write_bytes(inside)
    done = app.manifest.root / "swapped"
    unix_shell(f"cd '{unix_path(ui)}' && for i in $(seq 100); do "
               f"ln -s '{unix_path(outside)}' .l && mv -f .l swap.txt && "
               "cp .inside .f && mv -f .f swap.txt; done; touch ../swapped")
    answers: dict[int, int] = {}
    deadline = time.monotonic() + 120
    while not done.exists() and time.monotonic() < deadline:
        status, _, body = get("/swap.txt")
        assert b"outside the UI folder" not in body
        assert (status, body) in ((200, inside), (404, b"not found: swap.txt"))
        answers[status] = answers.get(status, 0) + 1
    assert done.exists() and answers.get(200), answers

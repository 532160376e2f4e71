"""The wasi-testsuite through the browser engine (runtime/js/wasi-*.js): what the page runs, a
server for it, and the reference it is judged against.

The page (tests/web/conformance.html) fetches /cases.json, runs every program in its own Worker
with its `root` tree fetched from the server as a read-write preopen at `/`, and POSTs exit code,
stdout, stderr and the final tree to /results. Each case is judged by its spec (like
tests/test_conformance.py) and its final tree must equal the one native wasmtime leaves.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import wasmtime
from test_conformance import CASES, TIMEOUT, Case, _writable_copy

from wvwasi.packager.web import tree_index

JS_DIR = Path(__file__).resolve().parents[1] / "runtime" / "js"
PAGE_DIR = Path(__file__).parent / "web"
ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Tree = dict[str, tuple[str, bytes | str | None]]  # path -> (type, bytes | symlink target | None)


def read_tree(root: Path) -> Tree:
    tree: Tree = {}
    for entry in tree_index(root):
        path = root / entry["path"]
        if entry["type"] == "file":
            tree[entry["path"]] = ("file", path.read_bytes())
        else:
            tree[entry["path"]] = (entry["type"], entry.get("target"))
    return tree


def page_tree(files: list[dict[str, Any]]) -> Tree:
    return {
        f["path"]: (f["type"], base64.b64decode(f["data"]) if f["type"] == "file"
                    else f.get("target"))
        for f in files
    }


def native_tree(case: Case, work: Path, engine: wasmtime.Engine) -> Tree | None:
    """Run `case` under wasmtime on a fresh copy of its root; the tree it leaves (None: no root)."""
    if case.root is None:
        return None
    copy = work / "native" / case.id
    _writable_copy(case.wasm.parent / case.root, copy)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [case.wasm.name, *case.args]
    wasi.env = [list(kv) for kv in case.env]
    wasi.preopen_dir(str(copy), "/")
    out = work / "native" / f"{case.id}.out"
    wasi.stdout_file = wasi.stderr_file = str(out)
    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, wasmtime.Module.from_file(engine, str(case.wasm)))
    try:
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
    except wasmtime.ExitTrap:
        pass
    return read_tree(copy)


@dataclass
class Site:
    """A served folder; `results` receives what its pages POST (JSON)."""

    origin: str
    results: queue.Queue[Any]


@contextmanager
def static_site(folder: Path, *, isolated: bool = True) -> Iterator[Site]:
    """Serve `folder` on 127.0.0.1 (with COOP/COEP when `isolated`); POST bodies go to results."""
    results: queue.Queue[Any] = queue.Queue()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def end_headers(self) -> None:
            for key, value in ISOLATION.items():
                if isolated or key == "Cache-Control":
                    self.send_header(key, value)
            super().end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            results.put(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    Handler.extensions_map = {**Handler.extensions_map, ".js": "text/javascript",
                              ".mjs": "text/javascript", ".wasm": "application/wasm"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_port}", results)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def engine_site(work: Path) -> Path:
    """A folder with tests/web/ and the engine under engine/, to add programs to and serve."""
    site = work / "site"
    shutil.copytree(PAGE_DIR, site)
    shutil.copytree(JS_DIR, site / "engine")
    return site


@contextmanager
def suite_site(work: Path) -> Iterator[Site]:
    """Serve the conformance page, the engine, the programs and their trees (roots copied)."""
    site = engine_site(work)
    cases = []
    for case in CASES:
        name = case.id.replace("/", "-")
        (site / "wasm").mkdir(exist_ok=True)
        shutil.copy(case.wasm, site / "wasm" / f"{name}.wasm")
        root = None
        if case.root is not None:
            copy = site / "trees" / name
            _writable_copy(case.wasm.parent / case.root, copy)
            index = {"base": f"{name}/", "entries": tree_index(copy)}
            (site / "trees" / f"{name}.json").write_text(json.dumps(index))
            root = f"/trees/{name}.json"
        cases.append({"id": case.id, "wasm": f"/wasm/{name}.wasm", "args": [case.wasm.name,
                      *case.args], "env": [list(kv) for kv in case.env], "root": root,
                      "timeout": TIMEOUT})
    (site / "cases.json").write_text(json.dumps(cases))
    with static_site(site) as served:
        yield served


@contextmanager
def webkit_window(url: str, work: Path) -> Iterator[None]:
    """A real pywebview GTK (WebKitGTK) window on `url` under a private Xvfb, for the block.

    Pages report by POSTing to their server; `work` holds the window's data and cache folders.
    """
    from xvfb import xvfb

    with xvfb() as display:
        env = {**os.environ, "DISPLAY": display, "JSC_useSharedArrayBuffer": "true",
               "XDG_DATA_HOME": str(work / "data"), "XDG_CACHE_HOME": str(work / "cache")}
        proc = subprocess.Popen([sys.executable, str(PAGE_DIR / "webkit_open.py"), url], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

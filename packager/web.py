"""The app as a static web site (`wvwasi build --format web`, `wvwasi serve --web`; docs/web.md).

The site is the UI folder with the page API injected into every HTML page, plus `__wvwasi/`:
wvwasi.js (its config names the services and says "web"), the browser engine (wasi-*.js), the
services' .wasm and the read-only trees they preopen. In the page, wvwasi.js runs each service
in a Web Worker instead of connecting to a bridge, so the same page works in the app and here.

What a browser cannot give is refused by `web_problems` with one line naming the manifest key:
preopens of the user's folders ($DOCUMENTS, $DOWNLOADS, $HOME, absolute paths), writable
project folders and sockets. User-picked folders (`user_grants`) come from the browser's folder
picker where it has one (runtime/js/wasi-web.js).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from wvwasi.runtime.bridge.protocol import page_constants
from wvwasi.runtime.bridge.static import JS_DIR, inject_script, page_script
from wvwasi.runtime.host.modules import content_name
from wvwasi.runtime.manifest import Manifest, Preopen
from wvwasi.runtime.paths import parse_host

#: The folder of the site that holds wvwasi's own files.
WVWASI_DIR = "__wvwasi"
ENGINE_FILES = ("wvwasi.js", "wvwasi.d.ts", "wasi-core.js", "wasi-worker.js", "wasi-engine.js",
                "wasi-web.js", "wasi-page.js", "wasi-hostfs.js", "wasi-wire.js")
#: What every response of the site needs (cross-origin isolation: blocking stdin in Workers).
HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
#: Runs before wvwasi.js: finds the site's files from where the page loaded this script (so the
#: site works in any folder) and, where the host sent no isolation headers, installs coi-sw.js.
_LOCATE = """(() => {
  const c = globalThis.__wvwasiConfig;
  const src = document.currentScript.src;
  c.web.base = new URL('.', src).href;
  c.web.engine = new URL('wasi-web.js', src).href;
  if (!globalThis.crossOriginIsolated && window.isSecureContext && navigator.serviceWorker &&
      !sessionStorage.getItem('wvwasi-coi')) {
    sessionStorage.setItem('wvwasi-coi', '1');  // one try per tab: never a reload loop
    navigator.serviceWorker.register(new URL('../coi-sw.js', src).href)
      .then(() => navigator.serviceWorker.ready)
      .then(() => location.reload(), (e) => console.warn('[wvwasi] not isolated: ' + e));
  }
})();
"""
_SITE_TREE = ("RESOURCES", None)  # shipped with the site, read-only
_MEMORY = ("CACHE", "TEMP")  # a fresh in-memory folder per instance


def web_problems(manifest: Manifest, shown: Path | str) -> list[str]:
    """One `"<file>: <key>: ..."` line per thing of `manifest` a web page cannot provide."""
    problems = []
    for name, service in manifest.services.items():
        if service.net.connect:
            problems.append(f"{shown}: services.{name}.net: a web page cannot give a service "
                            "sockets (remove net under [target.web]; call the server from the "
                            "page with fetch instead)")
        for i, preopen in enumerate(service.preopens):
            why = _preopen_problem(manifest, preopen)
            if why:
                problems.append(f"{shown}: services.{name}.preopens[{i}].host: {why}")
    for i, _ in enumerate(manifest.page.preopens):
        problems.append(f"{shown}: page.preopens[{i}]: a web page cannot lend folders of the "
                        "user's machine to page-supplied modules (remove [page] preopens "
                        "under [target.web]; give them files through vfs instead)")
    return problems


def _preopen_problem(manifest: Manifest, preopen: Preopen) -> str | None:
    var, rest = parse_host(preopen.host)
    if var in _SITE_TREE:
        if Path(rest).is_absolute():
            return (f'"{preopen.host}" is a folder of the user\'s machine, which a web page '
                    "cannot open (web builds map $APPDATA to browser storage)")
        if preopen.mode == "rw":
            return (f'"{preopen.host}" is mode "rw", but a web site can only ship it read-only '
                    "(keep data the service writes under $APPDATA)")
        if not _site_folder(manifest, rest).is_dir():
            return f'"{preopen.host}" is not a folder of the project'
        return None
    if var == "APPDATA" or var in _MEMORY:
        return None
    return (f'"{preopen.host}" is a folder of the user\'s machine, which a web page cannot '
            "open (web builds map $APPDATA to browser storage)")


def _site_folder(manifest: Manifest, rest: str) -> Path:
    """A shipped folder: $RESOURCES is the project root when the project runs (PathContext)."""
    return (manifest.root / rest).resolve()


def write_site(manifest: Manifest, dest: Path) -> Path:
    """Write the static site of `manifest` (loaded for platform "web") into the new folder `dest`.

    The caller has checked `web_problems` and the services' .wasm; returns `dest`.
    """
    shutil.copytree(manifest.ui.dir, dest, ignore=_ui_ignore(manifest.ui.dir.resolve()))
    for html in [*dest.rglob("*.html"), *dest.rglob("*.htm")]:
        depth = len(html.relative_to(dest).parts) - 1
        html.write_bytes(inject_script(html.read_bytes(),
                                       "../" * depth + f"{WVWASI_DIR}/wvwasi.js"))
    own = dest / WVWASI_DIR
    (own / "services").mkdir(parents=True)
    for name in ENGINE_FILES:
        shutil.copy(JS_DIR / name, own / name)
    services: dict[str, Any] = {}
    for name, service in manifest.services.items():
        module = f"services/{content_name(service.source)}"  # one file per module, not service
        if not (own / module).exists():
            shutil.copy(service.source, own / module)
        preopens = []
        for i, preopen in enumerate(service.preopens):
            var, rest = parse_host(preopen.host)
            entry: dict[str, Any] = {"guest": preopen.guest, "mode": preopen.mode}
            if var in _SITE_TREE:
                tree = f"trees/{name}-{i}"
                _write_tree(_site_folder(manifest, rest), own / tree, f"{name}-{i}/")
                entry.update(source="site", tree=f"{tree}.json")
            elif var == "APPDATA":
                entry.update(source="appdata", key=rest or ".")
            else:
                entry.update(source="memory")
            preopens.append(entry)
        limits = service.limits
        services[name] = {
            "module": module,
            "args": list(service.args),
            "env": [list(kv) for kv in service.env],
            "preopens": preopens,
            "limits": {"memory": limits.memory, "timeout": limits.timeout,
                       "instances": limits.instances, "message": limits.message,
                       "files": limits.files, "files_size": limits.files_size},
        }
    public = {
        name: {"kind": s.kind, "ipc": s.ipc, "userGrants": s.user_grants, "scratch": s.scratch}
        for name, s in manifest.services.items()
    }
    window = manifest.window  # the defaults of wvwasi.window.open()
    web = {"app": manifest.app.identifier, "services": services,
           "window": {"title": window.title, "width": window.width, "height": window.height}}
    config = {"services": public, "dev": False, **page_constants(), "web": web}
    # the base URLs come from where the page found this script, so the site works in any folder
    (own / "wvwasi.js").write_bytes(page_script(config, _LOCATE))
    shutil.copy(JS_DIR / "coi-sw.js", dest / "coi-sw.js")
    (dest / "_headers").write_text(
        "/*\n" + "".join(f"  {k}: {v}\n" for k, v in HEADERS.items()), encoding="utf-8")
    return dest


def _ui_ignore(ui: Path) -> Callable[[str, list[str]], set[str]]:
    """What the site leaves out of the UI folder, as the bridge does not serve it either:
    dotfiles, its own `__wvwasi/`, and symlinks that lead out of the UI folder."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n.startswith(".") or n == WVWASI_DIR}
        for name in names:
            path = Path(folder, name)
            if path.is_symlink() and not path.resolve().is_relative_to(ui):
                skip.add(name)
        return skip

    return ignore


def tree_index(folder: Path) -> list[dict[str, str]]:
    """The entries of `folder` as wasi-engine.js `fetchTree` reads them (parents first)."""
    entries: list[dict[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            path = Path(dirpath, name)
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                entries.append({"path": rel, "type": "symlink", "target": os.readlink(path)})
            else:
                entries.append({"path": rel, "type": "dir" if path.is_dir() else "file"})
    return entries


def _write_tree(folder: Path, dest: Path, base: str) -> None:
    """Copy `folder` to `dest` and list it in `dest`.json for wasi-engine.js `fetchTree`."""
    entries = tree_index(folder)
    dest.mkdir(parents=True)
    for entry in entries:
        if entry["type"] == "dir":
            (dest / entry["path"]).mkdir()
        elif entry["type"] == "file":
            shutil.copyfile(folder / entry["path"], dest / entry["path"])
    dest.with_suffix(".json").write_text(json.dumps({"base": base, "entries": entries}),
                                         encoding="utf-8")


class SiteServer:
    """A static server of a site folder on 127.0.0.1 with the site's headers (`serve --web`).

    It answers only requests whose `Host` is this server's own (`127.0.0.1:PORT` or
    `localhost:PORT`), so a page of another site whose name was rebound to 127.0.0.1 gets 403,
    and never lists a folder (404 where there is no index.html)."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        headers = {**HEADERS, "Cache-Control": "no-cache"}

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)

            def send_head(self) -> Any:
                own = self.server.server_address[1]
                if self.headers.get("Host") not in (f"127.0.0.1:{own}", f"localhost:{own}"):
                    self.send_error(403, f"the Host header must be 127.0.0.1:{own}")
                    return None
                return super().send_head()

            def list_directory(self, path: Any) -> None:
                self.send_error(404, "File not found")
                return None

            def end_headers(self) -> None:
                for key, value in headers.items():
                    self.send_header(key, value)
                super().end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        Handler.extensions_map = {**Handler.extensions_map, ".js": "text/javascript",
                                  ".wasm": "application/wasm", ".json": "application/json"}
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="wvwasi:serve-web", daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/"

    def start(self) -> str:
        self._thread.start()
        return self.url

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

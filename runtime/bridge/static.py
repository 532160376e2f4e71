"""Serving the UI folder: MIME types, isolation and CSP headers, the page-API tag, no escapes.

Every response is cross-origin isolated (COOP/COEP, so `crossOriginIsolated` is true) and carries
a CSP that allows only the bridge's own origin, its WebSocket and `wasm-unsafe-eval`. Requests may
only reach regular files inside the UI folder: no `..`, no symlinks out, no dotfiles (by the name
asked for or the one a link leads to), no listings.
HTML gets `<script src="/__wvwasi/wvwasi.js">` inserted unless it already loads it.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from ..host.hostpath import Root, is_regular

JS_DIR = Path(__file__).resolve().parent.parent / "js"
SCRIPT_PATH = "/__wvwasi/wvwasi.js"
TYPES_PATH = "/__wvwasi/wvwasi.d.ts"
SCRIPT_TAG = f'<script src="{SCRIPT_PATH}"></script>'.encode()
#: Characters of a page path a second window may open (`UIFiles.page`).
MAX_PAGE_PATH = 1024

_TEXT = "; charset=utf-8"
MIME_TYPES = {
    ".html": "text/html" + _TEXT,
    ".htm": "text/html" + _TEXT,
    ".js": "text/javascript" + _TEXT,
    ".mjs": "text/javascript" + _TEXT,
    ".css": "text/css" + _TEXT,
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain" + _TEXT,
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}

#: The wire module (runtime/js/wasi-wire.js): its exports are top-level declarations.
WIRE_FILE = "wasi-wire.js"
_EXPORT = re.compile(r"^export (?=(?:async )?(?:function|class|const) )", re.MULTILINE)
_EXPORTED = re.compile(r"^export (?:async )?(?:function|class|const) (\w+)", re.MULTILINE)

_HEAD = re.compile(rb"<head(?:\s[^>]*)?>", re.IGNORECASE)
_HTML = re.compile(rb"<html(?:\s[^>]*)?>", re.IGNORECASE)
_DOCTYPE = re.compile(rb"<!doctype[^>]*>", re.IGNORECASE)


def mime_type(path: Path) -> str:
    """The Content-Type for a served file."""
    suffix = path.suffix.lower()
    return MIME_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0] or (
        "application/octet-stream"
    )


def security_headers(origin: str) -> dict[str, str]:
    """Headers for every response of the bridge at `origin` (`http://127.0.0.1:PORT`)."""
    ws = origin.replace("http://", "ws://", 1)
    csp = "; ".join((
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "media-src 'self' data: blob:",
        "font-src 'self' data:",
        f"connect-src 'self' {ws} data: blob:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ))
    return {
        "Content-Security-Policy": csp,
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Embedder-Policy": "require-corp",
        "Cross-Origin-Resource-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def page_script(config: dict[str, Any], prelude: str = "") -> bytes:
    """wvwasi.js as pages get it: `globalThis.__wvwasiConfig = config`, then `prelude` (JS the web
    build runs first), then the wire module as a classic script (its exports handed over in
    `globalThis.__wvwasiWire`, nothing else leaks into the page), then runtime/js/wvwasi.js."""
    wire = (JS_DIR / WIRE_FILE).read_text(encoding="utf-8")
    names = ", ".join(_EXPORTED.findall(wire))
    return "".join((
        f"globalThis.__wvwasiConfig = {json.dumps(config)};\n",
        prelude,
        f"globalThis.__wvwasiWire = (() => {{\n'use strict';\n{_EXPORT.sub('', wire)}"
        f"return {{{names}}};\n}})();\n",
        (JS_DIR / "wvwasi.js").read_text(encoding="utf-8"),
    )).encode()


def inject_script(html: bytes, src: str = SCRIPT_PATH) -> bytes:
    """`html` with the page-API script tag at the start of <head> (or as early as possible);
    `src`: where the page loads it from (web builds use a relative path)."""
    if SCRIPT_PATH.encode() in html or src.encode() in html:
        return html
    match = _HEAD.search(html) or _HTML.search(html) or _DOCTYPE.search(html)
    pos = match.end() if match else 0
    tag = SCRIPT_TAG if src == SCRIPT_PATH else f'<script src="{src}"></script>'.encode()
    return html[:pos] + tag + html[pos:]


class UIFiles:
    """The files of one UI folder, as the bridge serves them.

    Each request opens its file beneath the UI folder (`hostpath.Root`: openat2 on Linux,
    NtCreateFile one name at a time beneath the folder's handle with each handle's final path
    checked on Windows), so no symlink (in the path, in the `index.html` picked for a folder, or
    in the file itself) leads out of it, and serves exactly what it opened, from that
    descriptor (a link swapped in after the check changes nothing). No component of the
    request, nor of the path the file really has inside the folder, may start with `.`; only
    regular files are served. Anything else, including names too long and symlink loops, is a
    404.
    """

    def __init__(self, root: Path, entry: str) -> None:
        self.root = root.resolve()
        self.entry = entry

    def open(self, url_path: str) -> tuple[int, str] | None:
        """(an fd open on the file, its `/`-separated path inside the folder) for a decoded URL
        path, or None if it is missing or not servable. The caller closes the fd."""
        rel = url_path.lstrip("/") or self.entry
        if "\0" in rel or "\\" in rel or _hidden(rel):  # `..`, dotfiles, .git ...
            return None
        try:
            with Root.open(self.root) as root:
                fd = root.open_fd(rel)
                try:
                    if stat.S_ISDIR(os.fstat(fd).st_mode):
                        os.close(fd)
                        fd = root.open_fd(f"{rel.rstrip('/')}/index.html")
                    where = root.relative(fd)  # the opened file's own path, not the asked one
                    if where is not None:
                        where = where.replace(os.sep, "/")
                    if is_regular(fd) and where is not None and not _hidden(where):
                        return fd, where
                except BaseException:
                    os.close(fd)
                    raise
                os.close(fd)
        except (OSError, ValueError):  # missing, a link out or in a loop, a name too long
            return None
        return None

    def page(self, path: str) -> str:
        """`path` if it names an HTML page of the folder (as `open` serves it), its path
        inside the folder; ValueError naming the cause otherwise (a URL, a query, `..`, a
        missing file, a file that is not HTML)."""
        if not isinstance(path, str) or not path or len(path) > MAX_PAGE_PATH or any(
                c in path for c in "?#:\\\0") or path.startswith("/"):
            raise ValueError(f"{path!r} is not a page of the app (a path like 'settings.html' "
                             "inside its UI folder)")
        opened = self.open(path)
        if opened is None:
            raise ValueError(f"{path!r} is not a page of the app's UI folder")
        fd, where = opened
        os.close(fd)
        if not mime_type(Path(where)).startswith("text/html"):
            raise ValueError(f"{path!r} is not an HTML page")
        return where

    async def respond(self, request: web.Request, url_path: str) -> web.StreamResponse:
        """The response for a GET (or HEAD) of `url_path`."""
        opened = self.open(url_path)
        if opened is None:
            return web.Response(status=404, text=f"not found: {url_path}")
        fd, where = opened
        try:
            content_type = mime_type(Path(where))
            if content_type.startswith("text/html"):
                with os.fdopen(os.dup(fd), "rb") as f:
                    data = f.read()
                return web.Response(body=inject_script(data),
                                    headers={"Content-Type": content_type})
            response = _SentFileResponse(fd, headers={"Content-Type": content_type})
            await response.prepare(request)  # sends the whole file while `fd` is open
            return response
        finally:
            os.close(fd)


class _SentFileResponse(web.FileResponse):
    """aiohttp's FileResponse (ranges, ETag, sendfile) of the file open on `fd`, never of a
    path opened again by name (a link swapped in since could lead out). Its handler sends it
    itself while it holds the fd open: aiohttp's own prepare() after the handler returns must
    not send it again."""

    def __init__(self, fd: int, headers: dict[str, str]) -> None:
        super().__init__(Path(os.devnull), headers=headers)  # the path is never opened
        self._fd = fd

    def _get_file_path_stat_encoding(  # type: ignore[override]
            self, accept_encoding: str) -> tuple[_OpenedFile | None, os.stat_result, None]:
        st = os.fstat(self._fd)
        return (_OpenedFile(self._fd) if stat.S_ISREG(st.st_mode) else None), st, None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)


class _OpenedFile:
    """What FileResponse opens in place of a path: a second descriptor of the opened file."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def open(self, mode: str) -> BinaryIO:
        return os.fdopen(os.dup(self._fd), mode)


def _hidden(rel: str) -> bool:
    """True if a component of `rel` starts with `.` (`..`, dotfiles, `.git/`)."""
    return any(part.startswith(".") for part in PurePosixPath(rel.replace(os.sep, "/")).parts)

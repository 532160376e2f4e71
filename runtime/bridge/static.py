"""Serving the UI folder: MIME types, isolation and CSP headers, the page-API tag, no escapes.

Every response is cross-origin isolated (COOP/COEP, so `crossOriginIsolated` is true) and carries
a CSP that allows only the bridge's own origin, its WebSocket and `wasm-unsafe-eval`. Requests may
only reach regular files inside the UI folder: no `..`, no symlinks out, no dotfiles, no listings.
HTML gets `<script src="/__wvwasi/wvwasi.js">` inserted unless it already loads it.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path, PurePosixPath

from aiohttp import web

JS_DIR = Path(__file__).resolve().parent.parent / "js"
SCRIPT_PATH = "/__wvwasi/wvwasi.js"
TYPES_PATH = "/__wvwasi/wvwasi.d.ts"
SCRIPT_TAG = f'<script src="{SCRIPT_PATH}"></script>'.encode()

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
    """The files of one UI folder, as the bridge serves them."""

    def __init__(self, root: Path, entry: str) -> None:
        self.root = root.resolve()
        self.entry = entry

    def resolve(self, url_path: str) -> Path | None:
        """The file for a decoded URL path, or None if it is missing or not servable."""
        rel = url_path.lstrip("/")
        if "\0" in rel or "\\" in rel:
            return None
        parts = PurePosixPath(rel).parts
        if any(part.startswith(".") for part in parts):  # `..`, dotfiles, .git ...
            return None
        target = (self.root / rel).resolve() if rel else (self.root / self.entry).resolve()
        if not target.is_relative_to(self.root):  # a symlink out of the folder
            return None
        if target.is_dir():
            target = target / "index.html"
        return target if target.is_file() else None

    def response(self, url_path: str) -> web.StreamResponse:
        """The response for a GET of `url_path`."""
        path = self.resolve(url_path)
        if path is None:
            return web.Response(status=404, text=f"not found: {url_path}")
        content_type = mime_type(path)
        if content_type.startswith("text/html"):
            body = inject_script(path.read_bytes())
            return web.Response(body=body, headers={"Content-Type": content_type})
        return web.FileResponse(path, headers={"Content-Type": content_type})

"""Who may talk to the bridge: the app's own page, and nothing else on the machine.

The window loads `LAUNCH_PATH?token=SECRET` (the secret travels out of band, in the URL the bridge
hands to its owner; each token works once). The bridge answers with an HttpOnly, SameSite=Strict
session cookie and a redirect to `/?KEY_PARAM=KEY`. Every other request needs that cookie, a
`Host` header of exactly `127.0.0.1:PORT` (DNS rebinding), and an `Origin`, when present, equal to
the bridge's own origin (WebSocket handshakes must carry one).

The cookie alone does not open a WebSocket. Browsers send cookies to every port of a host, so a
server on another 127.0.0.1 port sees it, and a plain client can replay it with any Origin and
Host it likes. The WebSocket also needs the socket key (`WS_PATH?key=KEY`): it reached the page
only in the redirect's URL, which goes to this port alone; wvwasi.js keeps it in sessionStorage
(per origin, so per port) and drops it from the address bar. After `revoke()` nothing is accepted.

A second app window (`wvwasi.window.open`) gets a session of its own: its launch URL admits it with
its own cookie and socket key and redirects it to its page; a request is attributed to the window
whose cookie (and, for the socket and actions, key) it presents, so each window's calls act on
that window. `forget(window)` ends a closed window's session. docs/security.md describes the
threat model.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

LAUNCH_PATH = "/__wvwasi/launch"
#: The app's actions (bridge/updates.py): like WS_PATH, they need the page's Origin and key.
ACTION_PREFIX = "/__wvwasi/actions/"
WS_PATH = "/__wvwasi/ws"
#: The query parameter of the post-launch redirect that carries the socket key to the page.
KEY_PARAM = "wvwasi-key"
#: The main window's name in `Gate` (a second window's is `w1`, `w2`, ...), as in
#: runtime/window (which does not import the bridge).
MAIN = ""
#: Where `Gate.refusal` leaves the window a request was admitted for (`request[WINDOW]`).
WINDOW = web.RequestKey("wvwasi_window", str)


@dataclass
class _Session:
    """One window's cookie (name and value), socket key and page (a UI path)."""

    cookie_name: str
    cookie: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    page: str = ""


class Gate:
    """The launch tokens, session cookie and socket key of one bridge on `127.0.0.1:port`."""

    def __init__(self, port: int) -> None:
        self.authority = f"127.0.0.1:{port}"
        self.origin = f"http://{self.authority}"
        # Cookies are not port-specific: the port in the name keeps two apps apart.
        self.cookie_name = f"wvwasi_{port}"
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}  # launch tokens not used yet -> their window
        # by window; empty once revoked
        self._sessions: dict[str, _Session] = {MAIN: _Session(self.cookie_name)}

    def launch_url(self, window: str = MAIN, page: str = "") -> str:
        """A new launch URL (its token works once) for the main window, or for a second
        `window` showing UI path `page` (its own session from now on)."""
        with self._lock:
            if not self._sessions:
                raise RuntimeError("the bridge is closed")
            if window != MAIN:
                self._sessions[window] = _Session(f"{self.cookie_name}_{window}", page=page)
            token = secrets.token_urlsafe(32)
            self._tokens[token] = window
        return f"{self.origin}{LAUNCH_PATH}?token={quote(token)}"

    def forget(self, window: str) -> None:
        """Refuse everything from second window `window` from now on (it closed)."""
        if window != MAIN:
            with self._lock:
                self._sessions.pop(window, None)
                for token in [t for t, w in self._tokens.items() if w == window]:
                    del self._tokens[token]

    def refusal(self, request: web.Request) -> str | None:
        """Why `request` must be refused, or None when it may proceed. A launch request that
        passes has used up its token."""
        if not self._sessions:
            return "the app has exited"
        if request.headers.get("Host") != self.authority:
            return f"the Host header must be {self.authority}"
        origin = request.headers.get("Origin")
        if origin is not None and origin != self.origin:
            return f"requests from origin {origin} are not accepted"
        # the socket and the app's actions (update, relaunch) need more than the cookie, which
        # other ports of 127.0.0.1 also receive: the page's Origin and socket key
        keyed = request.path == WS_PATH or request.path.startswith(ACTION_PREFIX)
        if keyed and origin is None:
            return "a WebSocket handshake or app action must carry the page's Origin"
        with self._lock:
            if request.path == LAUNCH_PATH:
                window = self._use_token(request.query.get("token"))
                if window is None:
                    return "invalid launch token (each launch URL works once)"
                request[WINDOW] = window
                return None
            windows = [w for w, s in self._sessions.items()
                       if _same(request.cookies.get(s.cookie_name), s.cookie)]
            if not windows:
                return "this page was not opened through the app's launch URL"
            if keyed:  # the window whose key it presents (a shared cookie jar sends them all)
                windows = [w for w in windows
                           if _same(request.query.get("key"), self._sessions[w].key)]
                if not windows:
                    return ("a WebSocket or app action needs the socket key this page got at "
                            "launch")
        request[WINDOW] = windows[0]
        return None

    def _use_token(self, given: str | None) -> str | None:
        for token, window in self._tokens.items():
            if _same(given, token):
                del self._tokens[token]
                return window
        return None

    def admit(self, response: web.StreamResponse, window: str = MAIN) -> str:
        """Give the page `window`'s session cookie (after a valid launch request); returns the
        URL to redirect it to (its page), which carries the socket key."""
        with self._lock:
            session = self._sessions.get(window)
        if session is None:
            raise RuntimeError("the bridge is closed")
        response.set_cookie(
            session.cookie_name, session.cookie, path="/", httponly=True, samesite="Strict"
        )
        return f"/{quote(session.page)}?{KEY_PARAM}={quote(session.key)}"

    def revoke(self) -> None:
        """Refuse everything from now on (the bridge is closing)."""
        with self._lock:
            self._sessions.clear()
            self._tokens.clear()


def _same(given: str | None, expected: str | None) -> bool:
    return given is not None and expected is not None and hmac.compare_digest(
        given.encode(), expected.encode()
    )

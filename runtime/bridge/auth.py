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
docs/security.md describes the threat model.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import quote

from aiohttp import web

LAUNCH_PATH = "/__wvwasi/launch"
#: The app's actions (bridge/updates.py): like WS_PATH, they need the page's Origin and key.
ACTION_PREFIX = "/__wvwasi/actions/"
WS_PATH = "/__wvwasi/ws"
#: The query parameter of the post-launch redirect that carries the socket key to the page.
KEY_PARAM = "wvwasi-key"


class Gate:
    """The launch tokens, session cookie and socket key of one bridge on `127.0.0.1:port`."""

    def __init__(self, port: int) -> None:
        self.authority = f"127.0.0.1:{port}"
        self.origin = f"http://{self.authority}"
        # Cookies are not port-specific: the port in the name keeps two apps apart.
        self.cookie_name = f"wvwasi_{port}"
        self._tokens: set[str] = set()  # launch tokens not used yet
        self._session: str | None = secrets.token_urlsafe(32)
        self._key: str | None = secrets.token_urlsafe(32)

    def launch_url(self) -> str:
        """A new launch URL; its token works once."""
        if self._session is None:
            raise RuntimeError("the bridge is closed")
        token = secrets.token_urlsafe(32)
        self._tokens.add(token)
        return f"{self.origin}{LAUNCH_PATH}?token={quote(token)}"

    def refusal(self, request: web.Request) -> str | None:
        """Why `request` must be refused, or None when it may proceed. A launch request that
        passes has used up its token."""
        if self._session is None or self._key is None:
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
        if request.path == LAUNCH_PATH:
            return None if self._use_token(request.query.get("token")) else (
                "invalid launch token (each launch URL works once)"
            )
        if not _same(request.cookies.get(self.cookie_name), self._session):
            return "this page was not opened through the app's launch URL"
        if keyed and not _same(request.query.get("key"), self._key):
            return "a WebSocket or app action needs the socket key this page got at launch"
        return None

    def _use_token(self, given: str | None) -> bool:
        for token in self._tokens:
            if _same(given, token):
                self._tokens.discard(token)
                return True
        return False

    def admit(self, response: web.StreamResponse) -> str:
        """Give the page its session cookie (after a valid launch request); returns the URL
        to redirect it to, which carries the socket key."""
        if self._session is None or self._key is None:
            raise RuntimeError("the bridge is closed")
        response.set_cookie(
            self.cookie_name, self._session, path="/", httponly=True, samesite="Strict"
        )
        return f"/?{KEY_PARAM}={quote(self._key)}"

    def revoke(self) -> None:
        """Refuse everything from now on (the bridge is closing)."""
        self._session = self._key = None
        self._tokens.clear()


def _same(given: str | None, expected: str | None) -> bool:
    return given is not None and expected is not None and hmac.compare_digest(
        given.encode(), expected.encode()
    )

"""Who may talk to the bridge: the app's own page, and nothing else on the machine.

The window loads `LAUNCH_PATH?token=SECRET` once (the secret travels out of band, in the URL the
bridge hands to its owner); the bridge answers with an HttpOnly, SameSite=Strict session cookie and
redirects to the UI. Every other request needs that cookie, a `Host` header of exactly
`127.0.0.1:PORT` (DNS rebinding), and an `Origin`, when present, equal to the bridge's own origin
(WebSocket handshakes must carry one). After `revoke()` nothing is accepted, so a secret from a
closed bridge cannot be replayed.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import quote

from aiohttp import web

LAUNCH_PATH = "/__wvwasi/launch"
WS_PATH = "/__wvwasi/ws"


class Gate:
    """The launch secret and session cookie of one bridge on `127.0.0.1:port`."""

    def __init__(self, port: int) -> None:
        self.authority = f"127.0.0.1:{port}"
        self.origin = f"http://{self.authority}"
        # Cookies are not port-specific: the port in the name keeps two apps apart.
        self.cookie_name = f"wvwasi_{port}"
        self._token: str | None = secrets.token_urlsafe(32)
        self._session: str | None = secrets.token_urlsafe(32)

    @property
    def launch_url(self) -> str:
        """The URL the window loads once: it carries the launch secret."""
        if self._token is None:
            raise RuntimeError("the bridge is closed")
        return f"{self.origin}{LAUNCH_PATH}?token={quote(self._token)}"

    def refusal(self, request: web.Request) -> str | None:
        """Why `request` must be refused, or None when it may proceed."""
        if self._token is None:
            return "the app has exited"
        if request.headers.get("Host") != self.authority:
            return f"the Host header must be {self.authority}"
        origin = request.headers.get("Origin")
        if origin is not None and origin != self.origin:
            return f"requests from origin {origin} are not accepted"
        if request.path == WS_PATH and origin is None:
            return "a WebSocket handshake must carry the page's Origin"
        if request.path == LAUNCH_PATH:
            return None if _same(request.query.get("token"), self._token) else (
                "invalid launch token"
            )
        if not _same(request.cookies.get(self.cookie_name), self._session):
            return "this page was not opened through the app's launch URL"
        return None

    def admit(self, response: web.StreamResponse) -> None:
        """Give the page its session cookie (after a valid launch request)."""
        if self._session is None:
            raise RuntimeError("the bridge is closed")
        response.set_cookie(
            self.cookie_name, self._session, path="/", httponly=True, samesite="Strict"
        )

    def revoke(self) -> None:
        """Refuse everything from now on (the bridge is closing)."""
        self._token = self._session = None


def _same(given: str | None, expected: str | None) -> bool:
    return given is not None and expected is not None and hmac.compare_digest(
        given.encode(), expected.encode()
    )

"""Connections the bridge has accepted but not yet trusted: bounded in number and in time.

Any local process may connect to the bridge's port. Until a connection has made a request that
passes the gate (auth.py) it is *untrusted*: it must do so within HEADER_TIMEOUT or it is closed,
and at most UNTRUSTED of them (UNTRUSTED_PER_CLIENT per client address) are open at once. A new
connection over either bound closes the oldest untrusted one (of that address, or of all) rather
than being refused, so a flood of half-open requests (slowloris) cannot keep the app's own page
out: its requests come complete and are trusted within milliseconds, long before the flood
could push them out. Trusted connections are bounded by the page bounds (MAX_PAGES) and
aiohttp's keep-alive timeout.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

#: Seconds a connection has to make a request that passes the gate.
HEADER_TIMEOUT = 10.0
#: Untrusted connections open at once, all clients together and per client address.
UNTRUSTED = 256
UNTRUSTED_PER_CLIENT = 128


class Connections:
    """Tracks the bridge's connections on its loop; `factory` wraps aiohttp's protocol."""

    def __init__(self) -> None:
        # oldest first: each with its client address and its deadline
        self._untrusted: OrderedDict[asyncio.BaseTransport, tuple[str, asyncio.TimerHandle]] = (
            OrderedDict())
        self._per_client: dict[str, int] = {}

    def factory(self, make: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server` around aiohttp's (`make`)."""
        return lambda: _Tracked(self, make())

    def trust(self, transport: asyncio.BaseTransport | None) -> None:
        """A request on `transport` passed the gate: no deadline, not counted any more."""
        if transport is not None:
            self._forget(transport)

    def _opened(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if peer else "?"
        if self._per_client.get(client, 0) >= UNTRUSTED_PER_CLIENT:
            self._close(next(t for t, (c, _) in self._untrusted.items() if c == client))
        if len(self._untrusted) >= UNTRUSTED:
            self._close(next(iter(self._untrusted)))
        deadline = asyncio.get_running_loop().call_later(HEADER_TIMEOUT, self._close, transport)
        self._untrusted[transport] = (client, deadline)
        self._per_client[client] = self._per_client.get(client, 0) + 1

    def _close(self, transport: asyncio.BaseTransport) -> None:
        if transport in self._untrusted:
            self._forget(transport)
            transport.abort()  # nothing to flush: it never got past the gate

    def _forget(self, transport: asyncio.BaseTransport) -> None:
        entry = self._untrusted.pop(transport, None)
        if entry is not None:
            client, deadline = entry
            deadline.cancel()
            left = self._per_client[client] - 1
            if left:
                self._per_client[client] = left
            else:
                del self._per_client[client]


class _Tracked(asyncio.Protocol):
    """aiohttp's protocol for one connection, registered with `Connections` while it lives."""

    def __init__(self, conns: Connections, inner: asyncio.Protocol) -> None:
        self._conns = conns
        self._inner = inner
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._conns._opened(transport)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._conns._forget(self._transport)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

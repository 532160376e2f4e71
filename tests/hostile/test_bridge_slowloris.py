"""Issue 23, finding 3: half-open requests (slowloris) cannot exhaust the bridge or starve the page.

Another local process, without any cookie, opens 3,000 connections to the bridge's port and
holds them: an unfinished request header, a complete request (refused 403, kept alive), nothing
at all, or the start of a TLS hello. Before the fix every one stayed open
for ever (an fd each; ~5,000 of them starved the page and logged "Too many open files"). Now at
most conns.UNTRUSTED connections that have not passed the gate are open (the oldest is closed
for a new one), each is closed after conns.HEADER_TIMEOUT (2 s here), the app's own page is
served during the flood, no traceback is logged and the fds return.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bridge_client import PageClient, fd_count, launch, send, served_services, spawn
from browser import ServedApp

from wvwasi.runtime.bridge import conns
from wvwasi.runtime.bridge.protocol import Op

pytestmark = pytest.mark.timeout(180)

HALF_OPEN = 3000
#: Connections asyncio accepts in one go (its listen backlog): that many may be accepted and
#: not yet counted, and as many closed (aborted) and not yet released, at any moment.
ACCEPT_BATCH = 100
#: The attacker: HALF_OPEN connections of four kinds; after "check" on stdin
#: it prints how many of them the bridge has closed.
ATTACKER = textwrap.dedent("""
    import socket, sys
    port, n = int(sys.argv[1]), int(sys.argv[2])
    socks = []
    host = b"Host: 127.0.0.1:%d\\r\\n" % port
    kinds = [
        b"GET / HTTP/1.1\\r\\n" + host + b"X-Slow: ",  # an unfinished header
        b"GET / HTTP/1.1\\r\\n" + host + b"\\r\\n",  # complete, refused (no cookie), kept alive
        b"",  # nothing at all
        b"\\x16\\x03\\x01\\x00",  # the start of a TLS hello
    ]
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(kinds[i % len(kinds)])
        socks.append(s)
    print("ready", flush=True)
    sys.stdin.readline()
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            while s.recv(65536):  # a 403 answer, then the end
                pass
            closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    print(closed, flush=True)
""")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, wasm_fixture: Callable[[str], Path],
        module_cache_dir: Path) -> Iterator[ServedApp]:
    with served_services(tmp_path_factory.mktemp("slowloris"), wasm_fixture,
                         module_cache_dir) as served:
        yield served


async def echo_once(app: ServedApp) -> float:
    """The app's page: launch, open its socket, one echo round trip; seconds it took."""
    start = time.perf_counter()
    creds = await asyncio.to_thread(launch, app)
    async with await PageClient.open(creds) as page:
        await page.send(spawn(1, "echo"), send(1, b"hello"))
        assert await page.wait_for(Op.MESSAGE, 1, timeout=20) == b"hello"
    return time.perf_counter() - start


def test_half_open_requests_are_bounded_and_the_page_is_served(
    app: ServedApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(conns, "HEADER_TIMEOUT", 2.0)
    caplog.set_level(logging.WARNING)
    asyncio.run(echo_once(app))  # warm: the echo service compiled, its threads started
    time.sleep(0.5)
    base = fd_count()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], fd_count())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    port = app.origin.rsplit(":", 1)[1]
    attacker = subprocess.Popen([sys.executable, "-c", ATTACKER, port, str(HALF_OPEN)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert attacker.stdout is not None and attacker.stdin is not None
        assert attacker.stdout.readline().strip() == "ready"
        took = asyncio.run(echo_once(app))  # during the flood
        time.sleep(conns.HEADER_TIMEOUT + 1)
        attacker.stdin.write("check\n")
        attacker.stdin.flush()
        closed = int(attacker.stdout.readline())
    finally:
        attacker.kill()
        attacker.wait()
        done.set()
        sampler.join()
    end = time.monotonic() + 10
    while time.monotonic() < end and fd_count() > base + 8:
        time.sleep(0.1)
    after = fd_count()
    print(f"\n{HALF_OPEN} half-open connections: bridge fds {base} -> peak {peak[0]} -> "
          f"{after}; the page's launch + socket + echo took {took * 1000:.0f} ms; "
          f"{closed} closed by the bridge (shared 2-core machine)")
    assert peak[0] <= base + conns.UNTRUSTED + 2 * ACCEPT_BATCH + 32  # + the page, its worker
    assert closed == HALF_OPEN
    assert after <= base + 8
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]

"""The bridge's static server against links planted in the UI folder, by a real service that can
write into it (`/web` = `ui/gen`, rw: a service of another app, since the app's own services may
not write its UI folder, docs/security.md) and by the folder's owner: link targets and the
`index.html` picked for a folder are checked, dotfiles are refused by any name, bad names are 404s
(never a 500), and a link swapped in while requests run never serves what lies outside.
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from bridge_client import launch
from browser import ServedApp, served_app
from projects import write_project

from wvwasi.runtime.host import hostpath
from wvwasi.runtime.host.service_host import ServiceHost, SpawnOptions
from wvwasi.runtime.manifest import load_manifest

pytestmark = pytest.mark.timeout(180)

SECRET = "outside the UI folder\n"
Get = Callable[[str], tuple[int, bytes]]


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory,
    wasm_fixture: Callable[[str], Path],
    module_cache_dir: Path,
) -> Iterator[ServedApp]:
    base = tmp_path_factory.mktemp("hostile-static")
    root = write_project(base / "app", {}, resolve_wasm=wasm_fixture)
    (root / "secret.txt").write_text(SECRET)
    ui = root / "ui"
    (ui / "gen").mkdir()
    (ui / ".env").write_text("API_KEY=hunter2\n")
    (ui / ".hidden").mkdir()
    (ui / ".hidden" / "x.js").write_text("hidden()")
    (ui / "nested").mkdir()
    (ui / "nested" / "notes.txt").write_text("notes\n")
    (ui / "deep").mkdir()
    (ui / "deep" / "index.html").symlink_to("/etc/passwd")
    (ui / "up").mkdir()
    (ui / "up" / "index.html").symlink_to("../../secret.txt")
    (ui / "dotidx").mkdir()
    (ui / "dotidx" / "index.html").symlink_to("../.env")
    (ui / "dotlink.txt").symlink_to(".env")
    (ui / "dotdir").symlink_to(".hidden")
    (ui / "alias.txt").symlink_to("nested/notes.txt")  # a link inside: served
    (ui / "loop1").symlink_to("loop2")
    (ui / "loop2").symlink_to("loop1")
    (ui / "chain1").symlink_to("chain2")
    (ui / "chain2").symlink_to("../secret.txt")
    os.mkfifo(ui / "fifo.txt")
    with served_app(root, dirs=base / "dirs", cache=module_cache_dir, copy_pages=False) as served:
        yield served


@pytest.fixture(scope="module")
def webgen(
    app: ServedApp, tmp_path_factory: pytest.TempPathFactory,
    wasm_fixture: Callable[[str], Path], module_cache_dir: Path,
) -> Iterator[ServiceHost]:
    """Another app's host whose `webgen` service (plant.c) may write the served `ui/gen`."""
    web = {"guest": "/web", "host": str(app.manifest.ui.dir / "gen"), "mode": "rw"}
    root = write_project(tmp_path_factory.mktemp("webgen") / "other",
                         {"webgen": {"source": "plant", "preopens": [web]}},
                         resolve_wasm=wasm_fixture, app={"identifier": "dev.wvwasi.webgen"})
    with ServiceHost(load_manifest(root), compile_cache=module_cache_dir) as host:
        yield host


@pytest.fixture(scope="module")
def get(app: ServedApp) -> Get:
    """GET a raw target with the session cookie: (status, body)."""
    page = launch(app)

    def fetch(target: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", page.port, timeout=10)
        try:
            conn.request("GET", target, headers={"Cookie": page.cookie})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    return fetch


def plant(webgen: ServiceHost, *ops: str) -> None:
    result = webgen.run_task("webgen", options=SpawnOptions(args=ops))
    lines = result.stdout.decode().splitlines()
    assert result.exit_code == 0 and len(lines) == len(ops), result
    assert all(line.endswith(": OK") for line in lines), lines


def assert_hidden(status: int, body: bytes) -> None:
    assert status == 404, (status, body[:200])
    assert b"root:" not in body and b"hunter2" not in body and SECRET.encode() not in body


# --- item 1: links a service plants in the UI folder --------------------------------------------


def test_a_service_planted_index_link_out_is_not_served(webgen: ServiceHost, get: Get) -> None:
    plant(webgen, "m:/web/x", "s:../../../etc/passwd:/web/x/index.html",
          "m:/web/y", "w:/web/y/index.html=<p>generated</p>",
          "s:../../secret.txt:/web/leak.txt", "s:../.env:/web/env.txt")
    for target in ("/gen/x/", "/gen/x", "/gen/x/index.html", "/gen//x/", "/gen/./x/",
                   "/gen/leak.txt", "/gen/env.txt"):
        assert_hidden(*get(target))
    status, body = get("/gen/y/")
    assert status == 200 and body.endswith(b"<p>generated</p>")


# --- item 2: the index.html picked inside a folder, and link targets ----------------------------


@pytest.mark.parametrize("target", [
    "/deep/", "/deep", "/deep/index.html",  # index.html -> /etc/passwd
    "/up/",  # index.html -> ../../secret.txt
    "/dotidx/",  # index.html -> ../.env
    "/dotlink.txt",  # -> .env
    "/dotdir/x.js",  # through a link to a dot folder
    "/chain1",  # a chain of links that ends outside
    "/.env", "/.hidden/x.js", "/%2eenv", "/nested/../.env", "/gen/../../secret.txt",
])
def test_links_to_dotfiles_or_out_are_404(get: Get, target: str) -> None:
    assert_hidden(*get(target))


def test_the_verify_fallback_refuses_the_same_links(
    get: Get, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without openat2 (resolve, open, then check the opened file's real path)."""
    monkeypatch.setattr(hostpath, "_openat2_works", False)
    for target in ("/deep/", "/up/", "/dotidx/", "/dotlink.txt", "/dotdir/x.js", "/chain1",
                   "/loop1", "/" + "a" * 300):
        assert_hidden(*get(target))
    assert get("/alias.txt") == (200, b"notes\n")


def test_links_inside_the_folder_to_regular_files_are_served(get: Get) -> None:
    assert get("/alias.txt") == (200, b"notes\n")
    assert get("/nested/notes.txt") == (200, b"notes\n")
    assert get("//nested//notes.txt")[0] in (200, 404)  # however aiohttp routes it: no 500


def test_files_are_sent_whole_in_ranges_and_without_server_errors(
    app: ServedApp, caplog: pytest.LogCaptureFixture
) -> None:
    body = bytes(range(256)) * 4096
    (app.manifest.ui.dir / "big.bin").write_bytes(body)
    url = urlsplit(app.url)
    conn = http.client.HTTPConnection("127.0.0.1", url.port or 0, timeout=10)
    conn.request("GET", f"{url.path}?{url.query}")
    resp = conn.getresponse()
    resp.read()
    cookie = resp.getheader("Set-Cookie").split(";", 1)[0]
    for method, extra, status, expected in (
        ("GET", {}, 200, body),
        ("GET", {"Range": "bytes=10-19"}, 206, body[10:20]),
        ("HEAD", {}, 200, b""),
    ):
        conn = http.client.HTTPConnection("127.0.0.1", url.port or 0, timeout=10)
        conn.request(method, "/big.bin", headers={"Cookie": cookie, **extra})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (status, expected)
        conn.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# --- item 11: bad names are 404, never a 500 ----------------------------------------------------


@pytest.mark.parametrize("target", [
    "/" + "a" * 300, "/nested/" + "b" * 300 + "/x", "/" + "c/" * 3000,
    "/loop1", "/loop1/x", "/fifo.txt", "/%00", "/a%00b", "/%ff%fe", "/%ed%a0%80",
])
def test_bad_names_loops_and_fifos_are_404(get: Get, target: str) -> None:
    status, body = get(target)
    assert status in (400, 404), (status, body[:300])
    assert b"Traceback" not in body


# --- a link swapped in between check and use ----------------------------------------------------


def test_a_link_swapped_in_while_serving_never_serves_outside(
    webgen: ServiceHost, get: Get
) -> None:
    """The service flips gen/race.txt between a regular file and a link out, fast, while
    requests run: every answer is the regular file or a 404."""
    plant(webgen, "w:/web/race.txt=legit")
    flipper = webgen.spawn("webgen", SpawnOptions(
        args=("flip:/web/race.txt:../../secret.txt::100000000",)), capture=True)
    seen: dict[int, int] = {}
    errors: list[str] = []

    def client() -> None:
        for _ in range(150):
            status, body = get("/gen/race.txt")
            seen[status] = seen.get(status, 0) + 1
            if not ((status == 200 and body == b"legit") or status == 404):
                errors.append(f"{status} {body[:100]!r}")

    try:
        threads = [threading.Thread(target=client) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert flipper.alive, bytes(flipper.stdout)  # it flipped during every request
    finally:
        flipper.terminate()
        flipper.wait(30)
    assert not errors, errors[:5]
    assert sum(seen.values()) == 300, seen


def test_quoted_traversal_spellings_stay_inside(get: Get) -> None:
    for target in ("/gen/%2e%2e/%2e%2e/secret.txt", "/" + quote("../secret.txt", safe=""),
                   "/nested/%2e%2e/%2e%2e/secret.txt", "/gen/..%2f..%2fsecret.txt"):
        status, body = get(target)
        assert status in (400, 404) and SECRET.encode() not in body, (target, status)

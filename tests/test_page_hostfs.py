"""Host folders lent to page-supplied modules (`grants`, `preopens` options), in real headless
Chromium on the desktop app's bridge: the module runs in the page's Worker (browser engine) and
its file calls on the folder go to the bridge (runtime/bridge/hostfs.py), beneath the folder.
The same in the real GTK window: tests/test_page_hostfs_window.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser import PAGES_DIR, chromium, served_app
from playwright.sync_api import Browser, Page
from projects import write_project

pytestmark = pytest.mark.timeout(180)

PAGE = {"preopens": [{"guest": "/data", "host": "$APPDATA/data", "mode": "rw"},
                     {"guest": "/ro", "host": "$APPDATA/ro", "mode": "ro"}]}
RUN = """async ([args, options]) => {
  try {
    const r = await WasiWorker.run('mods/hostfs.wasm', {args, ...options});
    return {code: r.exitCode, lines: r.stdout.trim().split('\\n')};
  } catch (e) { return {kind: e.kind, message: e.message}; }
}"""


def hostfs_project(base: Path, wasm_fixture: Callable[[str], Path]) -> Path:
    root = write_project(base / "app", {"echo": {"source": "echo_lines"}},
                         resolve_wasm=wasm_fixture, extra={"page": PAGE})
    ui = root / "ui"
    shutil.copytree(PAGES_DIR, ui, dirs_exist_ok=True)
    (ui / "mods").mkdir()
    shutil.copyfile(wasm_fixture("hostfs"), ui / "mods" / "hostfs.wasm")
    return root


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def app(tmp_path: Path, wasm_fixture: Callable[[str], Path], module_cache_dir: Path):
    picked = tmp_path / "picked"
    picked.mkdir()
    (picked / "photo.txt").write_text("pixels")
    root = hostfs_project(tmp_path, wasm_fixture)
    with served_app(root, dirs=tmp_path / "dirs", cache=module_cache_dir, copy_pages=False,
                    picker=lambda: picked) as served:
        data = served.bridge.host.paths.resolve("$APPDATA/data")
        ro = served.bridge.host.paths.resolve("$APPDATA/ro")
        data.mkdir(parents=True, exist_ok=True)
        ro.mkdir(parents=True, exist_ok=True)
        (ro / "fixed.txt").write_text("read-only")
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret").write_text("SECRET")
        served.dirs = {"data": data, "ro": ro, "outside": outside, "picked": picked}
        yield served


@pytest.fixture
def page(browser: Browser, app) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield app.open(context)
    finally:
        context.close()


def unmounted(app) -> bool:
    """Whether the bridge has no lent folder left (the page unmounts after a worker ends)."""
    for _ in range(100):
        if not app.bridge._folders:
            return True
        time.sleep(0.05)
    return False


def run(page: Page, args: list[str], **options: object) -> dict:
    return page.evaluate(RUN, [args, options])


def test_a_page_module_reads_writes_lists_and_renames_in_a_host_folder(app, page: Page) -> None:
    data = app.dirs["data"]
    (data / "hello.txt").write_text("hi from the host")
    r = run(page, ["r:/data/hello.txt", "w:/data/new.txt:written", "a:/data/new.txt:+more",
                   "r:/data/new.txt", "d:/data/sub", "w:/data/sub/x:1", "l:/data",
                   "m:/data/new.txt:/data/sub/moved.txt", "l:/data/sub", "u:/data/hello.txt",
                   "t:/data/sub/moved.txt", "x:/data/sub", "r:/ro/fixed.txt"],
            preopens=["/data", "/ro"])
    assert r == {"code": 0, "lines": [
        "r /data/hello.txt: OK hi from the host", "w /data/new.txt: OK", "a /data/new.txt: OK",
        "r /data/new.txt: OK written+more", "d /data/sub: OK", "w /data/sub/x: OK",
        "l /data: OK hello.txt,new.txt,sub", "m /data/new.txt: OK", "l /data/sub: OK moved.txt,x",
        "u /data/hello.txt: OK", "t /data/sub/moved.txt: OK 12", "x /data/sub: ENOTEMPTY",
        "r /ro/fixed.txt: OK read-only"]}
    assert (data / "sub" / "moved.txt").read_text() == "written+more"
    assert sorted(os.listdir(data)) == ["sub"]
    assert unmounted(app)  # the run ended: its mounts (and their handles) are gone


def test_escapes_and_writes_to_a_read_only_folder_are_refused(app, page: Page) -> None:
    data, outside = app.dirs["data"], app.dirs["outside"]
    (data / "planted").symlink_to(outside)  # planted inside, pointing out
    (data / "planted-file").symlink_to(outside / "secret")
    r = run(page, ["r:/data/../outside/secret", "r:/data/planted/secret", "r:/data/planted-file",
                   "w:/data/planted/new:x", "s:/etc/passwd:/data/abs", "s:../../..:/data/up",
                   "r:/data/up/etc/passwd", "l:/data/planted", "t:/data/planted/secret",
                   "w:/ro/new.txt:x", "a:/ro/fixed.txt:x", "u:/ro/fixed.txt", "d:/ro/dir",
                   "m:/ro/fixed.txt:/ro/moved", "r:/ro/fixed.txt"],
            preopens=["/data", "/ro"])
    assert r["code"] == 0
    assert r["lines"] == [
        "r /data/../outside/secret: EPERM",
        "r /data/planted/secret: EPERM", "r /data/planted-file: EPERM",
        "w /data/planted/new: EPERM", "s /data/abs: EPERM", "s /data/up: OK",
        "r /data/up/etc/passwd: EPERM", "l /data/planted: EPERM", "t /data/planted/secret: EPERM",
        "w /ro/new.txt: EPERM", "a /ro/fixed.txt: EPERM", "u /ro/fixed.txt: EPERM",
        "d /ro/dir: EPERM", "m /ro/fixed.txt: EPERM", "r /ro/fixed.txt: OK read-only"]
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (app.dirs["ro"] / "fixed.txt").read_text() == "read-only"


def test_a_symlink_swapped_in_during_reads_never_leads_out(app, page: Page) -> None:
    data, outside = app.dirs["data"], app.dirs["outside"]
    inside = data / "real"
    inside.mkdir()
    (inside / "secret").write_text("inside")
    stop = threading.Event()

    def swap() -> None:  # `swap` links to the folder beside it, then out, again and again
        link = data / "swap"
        while not stop.is_set():
            tmp = data / ".swap-tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to("real" if link.is_symlink() and os.readlink(link) == str(outside)
                           else outside)
            os.replace(tmp, link)

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        r = run(page, ["r:/data/swap/secret"] * 300, preopens=["/data"])
    finally:
        stop.set()
        swapper.join()
    outcomes = {line.split(": ", 1)[1] for line in r["lines"]}
    assert "OK SECRET" not in outcomes
    assert outcomes <= {"OK inside", "EPERM", "ENOENT"}
    assert "EPERM" in outcomes and "OK inside" in outcomes  # both sides of the race were hit


def test_grants_lend_a_picked_folder_at_most_with_its_mode(app, page: Page) -> None:
    r = page.evaluate("""async () => {
      const grant = await WasiWorker.requestDirectory({mode: 'ro'});
      const run = (args, mode) => WasiWorker.run('mods/hostfs.wasm', {args,
        grants: [{grant, guest: '/photos', ...(mode ? {mode} : {})}]});
      const ok = await run(['r:/photos/photo.txt', 'w:/photos/x:1', 'l:/photos']);
      let refused;
      try { await run(['l:/photos'], 'rw'); } catch (e) { refused = [e.kind, e.message]; }
      let unknown;
      try {
        await WasiWorker.run('mods/hostfs.wasm', {preopens: ['/nope']});
      } catch (e) { unknown = [e.kind, e.message]; }
      return {ok: ok.stdout.trim().split('\\n'), refused, unknown};
    }""")
    assert r["ok"] == ["r /photos/photo.txt: OK pixels", "w /photos/x: EPERM",
                       "l /photos: OK photo.txt"]
    assert r["refused"][0] == "permission" and "read-only" in r["refused"][1]
    assert r["unknown"][0] == "permission" and "[page] preopens" in r["unknown"][1]
    assert sorted(os.listdir(app.dirs["picked"])) == ["photo.txt"]


def test_a_worker_holding_a_folder_releases_it_when_it_ends_or_its_page_leaves(
        app, browser: Browser) -> None:
    context = browser.new_context()
    try:
        page = app.open(context)
        page.evaluate("""() => new Promise((resolve) => {
          const w = new WasiWorker('mods/hostfs.wasm', {args: ['l:/data'], preopens: ['/data']});
          w.onexit = () => resolve();
        })""")
        assert unmounted(app)
        page.evaluate("""() => { globalThis.held = new WasiWorker('mods/hostfs.wasm',
          {args: ['l:/data', 'r:/in/wait'], preopens: ['/data'],
           vfs: {'/in/wait': new ReadableStream()}}); }""")  # blocks reading the stream
        page.wait_for_function("() => true")
        deadline = 50
        while not app.bridge._folders and deadline:
            page.wait_for_timeout(100)
            deadline -= 1
        assert len(app.bridge._folders) == 1
    finally:
        context.close()
    assert unmounted(app)


def test_host_folders_in_the_real_gtk_window(tmp_path: Path,
                                             wasm_fixture: Callable[[str], Path]) -> None:
    """The same in a real pywebview GTK window (WebKitGTK under Xvfb): the app's own bridge,
    the page's Worker, synchronous calls to the host (tests/hostfs_window_driver.py)."""
    from test_window import app_env
    from xvfb import xvfb

    root = hostfs_project(tmp_path, wasm_fixture)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("SECRET")
    with xvfb() as display:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "hostfs_window_driver.py"), str(root),
             "gtk", str(outside)],
            env=app_env(display, tmp_path / "home"), capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, result["error"]
    assert result["status"] == 0 and result["threads_left"] == []
    assert result["isolated"] is True
    work, escapes = result["runs"]
    assert work == {"code": 0, "lines": [
        "r /data/hello.txt: OK hi from the host", "w /data/new.txt: OK", "a /data/new.txt: OK",
        "m /data/new.txt: OK", "d /data/sub: OK", "l /data: OK hello.txt,planted,renamed.txt,sub",
        "r /data/renamed.txt: OK written+more", "r /ro/fixed.txt: OK read-only"]}
    assert escapes == {"code": 0, "lines": [
        "r /data/../outside/secret: EPERM", "r /data/planted/secret: EPERM",
        "s /data/abs: EPERM", "w /ro/new.txt: EPERM", "u /ro/fixed.txt: EPERM"]}
    assert result["files"] == ["hello.txt", "planted", "renamed.txt", "sub"]
    assert result["renamed"] == "written+more"
    assert result["outside"] == ["secret"] and result["mounts_left"] == 0

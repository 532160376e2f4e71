"""Signed auto-update, for real: an app built as 0.1.0 (tar.gz and onefile) updates itself to a
0.2.0 built and signed by `wvwasi build`, from a loopback HTTP server; every bad answer leaves
the installed app unchanged, and an update killed at any step leaves an app that starts."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from build_helpers import SDE, cli_env, new_project, wvwasi
from update_server import Route, Server

IDENT = "dev.wvwasi.tests.update"
SLUG = "wvwasi-update-test"
def _build(project: Path, out: Path, key: Path) -> dict[str, Path]:
    proc = wvwasi("build", project, "--format", "tar.gz", "--format", "onefile", "--format", "deb",
                  "--out", out,
                  "--json", env=cli_env(SOURCE_DATE_EPOCH=SDE,
                                        WVWASI_SIGNING_PRIVATE_KEY=str(key),
                                        WVWASI_SIGNING_PRIVATE_KEY_PASSWORD="pw"))
    assert proc.returncode == 0, proc.stderr
    return {a["format"]: Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]}


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory, server: Server) -> dict[str, Any]:
    """0.1.0 and 0.2.0 of one app, built and signed; 0.2.0's files served by `server`."""
    top = tmp_path_factory.mktemp("update")
    made = wvwasi("signer", "generate", "-w", top / "key", "--password", "pw")
    assert made.returncode == 0, made.stderr
    project = new_project(top, "wvwasi Update Test", "\n".join([
        "[update]",
        f'endpoints = ["http://127.0.0.1:{server.port}/{{{{target}}}}/{{{{arch}}}}/'
        '{{current_version}}/latest.json"]',
        f'pubkey = """{(top / "key.pub").read_text().strip()}"""',
        f'download_url = "http://127.0.0.1:{server.port}/releases/v{{{{version}}}}"',
    ]), IDENT)
    old = _build(project, top / "v1", top / "key")
    toml = project / "wvwasi.toml"
    toml.write_text(toml.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    new = _build(project, top / "v2", top / "key")
    latest = json.loads((top / "v2" / "latest.json").read_text())
    for path in new.values():
        server.routes[f"/releases/v0.2.0/{path.name}"] = path.read_bytes()
    for current in ("0.1.0", "0.2.0"):  # {{current_version}} in the endpoint
        server.routes[f"/linux/x86_64/{current}/latest.json"] = json.dumps(latest).encode()
    return {"top": top, "old": old, "new": new, "latest": latest, "project": project}


def _install_targz(releases: dict[str, Any], dest: Path) -> Path:
    """0.1.0's tar.gz unpacked into `dest`; returns its executable."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-xzf", releases["old"]["tar.gz"], "-C", dest], check=True)
    return dest / f"{SLUG}-0.1.0-linux-x86_64" / SLUG


def _run(exe: Path, *args: str, cache: Path | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def _version(exe: Path, cache: Path | None = None) -> str:
    proc = _run(exe, "--version", cache=cache, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")
            if p.is_file()}


def test_latest_json_and_signatures_are_tauri_s_format(releases: dict[str, Any],
                                                      server: Server):
    latest = releases["latest"]
    assert latest["version"] == "0.2.0" and latest["pub_date"] == "2023-11-14T22:13:20Z"
    assert set(latest["platforms"]) == {"linux-x86_64", "linux-x86_64-targz",
                                        "linux-x86_64-onefile", "linux-x86_64-deb"}
    assert latest["platforms"]["linux-x86_64"] == latest["platforms"]["linux-x86_64-targz"]
    for fmt, key in (("tar.gz", "targz"), ("onefile", "onefile"), ("deb", "deb")):
        artefact = releases["new"][fmt]
        entry = latest["platforms"][f"linux-x86_64-{key}"]
        assert entry["url"] == f"http://127.0.0.1:{server.port}/releases/v0.2.0/{artefact.name}"
        sig = artefact.with_name(artefact.name + ".sig")
        assert base64.b64decode(entry["signature"]) == sig.read_bytes()
        ok = subprocess.run(["minisign", "-V", "-p", str(releases["top"] / "key.pub"), "-m",
                             str(artefact), "-x", str(sig)], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr


def test_targz_updates_from_0_1_0_to_0_2_0(releases: dict[str, Any], tmp_path: Path):
    exe = _install_targz(releases, tmp_path / "apps")
    assert _version(exe) == "wvwasi Update Test 0.1.0"
    proc = _run(exe, "--update")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "wvwasi Update Test 0.2.0 installed (was 0.1.0)"
    assert _version(exe) == "wvwasi Update Test 0.2.0"
    assert os.listdir(tmp_path / "apps") == [exe.parent.name]  # no leftovers beside it
    again = _run(exe, "--update")
    assert again.returncode == 0 and "is the newest version" in again.stdout, again.stderr


def test_onefile_updates_from_0_1_0_to_0_2_0(releases: dict[str, Any], tmp_path: Path):
    exe = tmp_path / "bin" / SLUG
    exe.parent.mkdir()
    shutil.copyfile(releases["old"]["onefile"], exe)
    exe.chmod(0o755)
    cache = tmp_path / "cache"
    assert _version(exe, cache) == "wvwasi Update Test 0.1.0"
    proc = _run(exe, "--update", cache=cache)
    assert proc.returncode == 0, proc.stderr
    assert exe.read_bytes() == releases["new"]["onefile"].read_bytes()
    assert _version(exe, cache) == "wvwasi Update Test 0.2.0"
    assert os.listdir(exe.parent) == [SLUG]


def _dpkg_version() -> str:
    return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", SLUG], capture_output=True,
                          text=True).stdout


def test_deb_installed_by_dpkg_updates_through_dpkg(releases: dict[str, Any], server: Server,
                                                    tmp_path: Path):
    """The real package path as root (this test's machine): dpkg installs 0.1.0, `--update`
    installs 0.2.0 with `dpkg -i`. A tampered package is refused before dpkg runs; a user's
    app (as nobody) gets as far as pkexec, which this machine lacks (and polkit with it)."""
    if os.geteuid() != 0:
        pytest.skip("installs a real package with dpkg: needs root")
    exe = Path("/opt") / SLUG / SLUG
    route = f"/releases/v0.2.0/{releases['new']['deb'].name}"
    good = server.routes[route]
    try:
        subprocess.run(["dpkg", "-i", releases["old"]["deb"]], check=True, capture_output=True)
        assert _version(exe, tmp_path) == "wvwasi Update Test 0.1.0"
        server.routes[route] = _tamper(releases["new"]["deb"].read_bytes())
        proc = _run(exe, "--update", cache=tmp_path)
        assert proc.returncode == 1 and "the signature does not match" in proc.stderr, proc
        assert _dpkg_version() == "0.1.0"
        server.routes[route] = good
        # a user's app: the package is downloaded and verified where the user may write
        # (not beside /opt/<slug>), then needs pkexec, which this machine lacks
        user = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                               exe, "--update"], capture_output=True, text=True, timeout=300,
                              env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})
        assert user.returncode == 1, user
        assert user.stderr.strip().endswith("installing a package needs root and pkexec is "
                                            "missing: run the update as root "
                                            "(`sudo APP --update`)"), user.stderr
        assert _dpkg_version() == "0.1.0"
        proc = _run(exe, "--update", cache=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "wvwasi Update Test 0.2.0 installed (was 0.1.0)"
        assert _dpkg_version() == "0.2.0"
        assert _version(exe, tmp_path) == "wvwasi Update Test 0.2.0"
        assert _run(exe, "--self-test=headless", cache=tmp_path).returncode == 0
        assert not list(Path("/opt").glob(f".{SLUG}.update-*"))
        assert not list(Path(tempfile.gettempdir()).glob(f"{SLUG}.update-*"))
    finally:
        server.routes[route] = good
        subprocess.run(["dpkg", "--purge", SLUG], capture_output=True)
    assert not exe.exists()


def _path(releases: dict[str, Any]) -> str:
    """Where the server has 0.2.0's tar.gz."""
    return f"/releases/v0.2.0/{releases['new']['tar.gz'].name}"


def _tamper(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:]


def _truncated(data: bytes) -> Route:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data[: len(data) // 2])
        h.wfile.flush()
        h.close_connection = True
    return answer


def _endless_json(h: BaseHTTPRequestHandler) -> None:  # 100 MB of JSON-looking text
    h.send_response(200)
    h.end_headers()
    h.wfile.write(b'{"version": "0.2.0", "notes": "')
    chunk = b"x" * (1 << 20)
    with contextlib.suppress(OSError):  # the updater hangs up, as it should
        for _ in range(100):
            h.wfile.write(chunk)
    h.close_connection = True


def _other_key_signature(releases: dict[str, Any], artefact: Path) -> str:
    from wvwasi.packager.signing import generate, sign_file

    _, other = generate(None)
    return base64.b64encode(sign_file(artefact, other).encode()).decode()


#: name -> (what to change: (releases, latest.json, routes) -> None, expected error text)
FAILURES: dict[str, tuple[Callable[[dict[str, Any], dict, dict], None], str]] = {
    "tampered archive": (
        lambda r, latest, routes: routes.__setitem__(
            _path(r), _tamper(r["new"]["tar.gz"].read_bytes())),
        "the signature does not match"),
    "wrong key": (
        lambda r, latest, routes: latest["platforms"]["linux-x86_64-targz"].__setitem__(
            "signature", _other_key_signature(r, r["new"]["tar.gz"])),
        "the signature was made with key"),
    "signature of another file": (
        lambda r, latest, routes: latest["platforms"]["linux-x86_64-targz"].__setitem__(
            "signature", latest["platforms"]["linux-x86_64-onefile"]["signature"]),
        "the signature does not match"),
    "downgrade": (lambda r, latest, routes: latest.__setitem__("version", "0.0.9"),
                  "offers 0.0.9, older than the installed 0.1.0: not downgrading"),
    "truncated download": (
        lambda r, latest, routes: routes.__setitem__(
            _path(r), _truncated(r["new"]["tar.gz"].read_bytes())),
        "the download broke off"),
    "server down": (lambda r, latest, routes: routes.__setitem__("down", b""),
                    "cannot connect"),
    "not JSON": (lambda r, latest, routes: routes.__setitem__("latest", b"<html>oops</html>"),
                 "not JSON (expected Tauri's latest.json)"),
    "100 MB latest.json": (lambda r, latest, routes: routes.__setitem__("latest", _endless_json),
                           "larger than 1 MiB: not an update manifest"),
}


@pytest.fixture(scope="module")
def installed(releases: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 0.1.0 install that every failing update must leave as it is."""
    return _install_targz(releases, tmp_path_factory.mktemp("installed"))


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_bad_update_is_refused_and_changes_nothing(case: str, releases: dict[str, Any],
                                                     installed: Path, server: Server):
    change, expected = FAILURES[case]
    latest = json.loads(json.dumps(releases["latest"]))
    routes: dict[str, Any] = {}
    change(releases, latest, routes)
    endpoint = "/linux/x86_64/0.1.0/latest.json"
    saved = dict(server.routes)
    server.routes[endpoint] = routes.pop("latest", json.dumps(latest).encode())
    server.routes.update({k: v for k, v in routes.items() if k.startswith("/")})
    toml = installed.parent / "app" / "wvwasi.toml"
    manifest = toml.read_text()
    before = _snapshot(installed.parent)
    if "down" in routes:  # the endpoint: a loopback port nothing listens on
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        toml.write_text(manifest.replace(f"127.0.0.1:{server.port}", f"127.0.0.1:{closed}"))
    try:
        proc = _run(installed, "--update", timeout=120)
    finally:
        server.routes.clear()
        server.routes.update(saved)
        toml.write_text(manifest)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{SLUG}: update failed: ") and expected in lines[0], lines[0]
    assert _snapshot(installed.parent) == before
    assert _version(installed) == "wvwasi Update Test 0.1.0"
    assert [p.name for p in installed.parent.parent.iterdir()] == [installed.parent.name]


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of `pid`'s child processes."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            out.append((int(child), cmd))
    return out


@pytest.mark.parametrize("step", ["download", "self-test", "check in place"])
def test_an_update_killed_at_any_step_leaves_an_app_that_starts(
        step: str, releases: dict[str, Any], server: Server, tmp_path: Path):
    exe = _install_targz(releases, tmp_path / "apps")
    name = _path(releases)
    data = releases["new"]["tar.gz"].read_bytes()
    half_sent, release = threading.Event(), threading.Event()

    def slow(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data[: len(data) // 2])
        h.wfile.flush()
        half_sent.set()
        release.wait(60)
        with contextlib.suppress(OSError):  # the updater was killed
            h.wfile.write(data[len(data) // 2:])

    if step == "download":
        server.routes[name] = slow
    proc = subprocess.Popen([str(exe), "--update"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        marker = {"self-test": "--self-test=headless", "check in place": "--version"}.get(step)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if step == "download" and half_sent.is_set():
                break
            if marker and any(marker in cmd for _, cmd in _children(proc.pid)):
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"the update ended before the step {step!r}"
        os.killpg(proc.pid, signal.SIGKILL)  # the updater and the new version it runs
        proc.wait(30)
    finally:
        release.set()
        server.routes[name] = data
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    version = _version(exe)  # the app starts: the old version, or the whole new one
    assert version in ("wvwasi Update Test 0.1.0", "wvwasi Update Test 0.2.0")
    if step != "check in place":
        assert version.endswith("0.1.0")
    finished = _run(exe, "--update")  # and the next update cleans up and succeeds
    assert finished.returncode == 0, finished.stderr
    assert _version(exe) == "wvwasi Update Test 0.2.0"
    assert os.listdir(tmp_path / "apps") == [exe.parent.name]


def _post(creds: Any, target: str, **headers: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", creds.port, timeout=60)
    try:
        conn.request("POST", target, headers={"Host": f"127.0.0.1:{creds.port}", **headers})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_the_page_checks_and_installs_through_wvwasi_updater(releases: dict[str, Any],
                                                            tmp_path: Path):
    """The page API in headless Chromium, on a bridge serving the installed 0.1.0's payload
    with its real updater (what a built app's window gets)."""
    from bridge_client import launch_with
    from browser import chromium

    from wvwasi.runtime.bridge.server import Bridge
    from wvwasi.runtime.host.service_host import ServiceHost
    from wvwasi.runtime.manifest import load_manifest
    from wvwasi.runtime.paths import PathContext
    from wvwasi.runtime.update.updater import Updater

    exe = _install_targz(releases, tmp_path / "apps")
    manifest = load_manifest(exe.parent / "app")
    paths = PathContext.for_app(manifest, base_dirs={v: tmp_path / v.lower() for v in (
        "APPDATA", "DOCUMENTS", "DOWNLOADS", "HOME", "CACHE")})
    host = ServiceHost(manifest, paths=paths)
    bridge = Bridge(manifest, host, updater=lambda: Updater(manifest, exe))
    try:
        bridge.start()
        creds = launch_with(bridge.launch_url())
        action = "/__wvwasi/actions/update-check"
        # the cookie alone (which other 127.0.0.1 ports also get) or no Origin: refused
        assert _post(creds, action, Cookie=creds.cookie, Origin=creds.origin)[0] == 403
        assert _post(creds, f"{action}?key={creds.key}", Cookie=creds.cookie)[0] == 403
        status, body = _post(creds, f"{action}?key={creds.key}", Cookie=creds.cookie,
                             Origin=creds.origin)
        assert status == 200 and json.loads(body)["update"]["version"] == "0.2.0"
        relaunch = _post(creds, f"/__wvwasi/actions/relaunch?key={creds.key}",
                         Cookie=creds.cookie, Origin=creds.origin)
        assert "cannot relaunch" in json.loads(relaunch[1])["error"]  # no window here
        with chromium() as browser:
            page = browser.new_context().new_page()
            page.goto(bridge.launch_url())
            found = page.evaluate("wvwasi.updater.check()")
            assert found == {"version": "0.2.0", "notes": "", "date": "2023-11-14T22:13:20Z"}
            result = page.evaluate("""async () => {
                const seen = [];
                const installed = await wvwasi.updater.install((p) => seen.push(p));
                return {installed, seen, relaunch: typeof wvwasi.app.relaunch};
            }""")
    finally:
        bridge.close()
        host.close()
    assert result["installed"] == "0.2.0"
    assert result["relaunch"] == "function"
    last = result["seen"][-1]
    assert last["downloaded"] == last["total"] == releases["new"]["tar.gz"].stat().st_size
    assert _version(exe) == "wvwasi Update Test 0.2.0"

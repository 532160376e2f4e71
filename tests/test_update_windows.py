"""Signed auto-update of the real cross-built Windows app under Wine, through its NSIS setup.

1.0.0 is installed by its setup.exe; `APP.exe --update` against a loopback server serving
1.0.1's setup.exe, .sig and latest.json downloads and verifies the setup, starts it in update
mode and exits; the setup waits for the app to exit (it cannot replace a running program), then
installs 1.0.1, which passes its self-test. A changed byte in the setup or a signature by
another key leave 1.0.0 installed and working. The Windows runtime comes from the shared test
cache (test_windows_cross.py freezes it; whichever runs first does, once).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from build_helpers import CACHE, cli_env, wvwasi
from projects import write_project
from test_update import Server
from test_windows_cross import WINDOWS
from wine import Wine, app_files, installed, windows_cpython

pytestmark = pytest.mark.timeout(3600)

SERVICES = {"echo": {"source": "echo_lines", "kind": "dedicated"},
            "wc": {"source": "wc", "kind": "task"}}
EXE = "upwin.exe"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory, server: Server,
             wasm_fixture: Callable[[str], Path]) -> dict[str, Any]:
    """1.0.0 and 1.0.1 built for Windows (nsis, zip) and signed; 1.0.1 served by `server`."""
    for tool in ("wine", "wineserver", "x86_64-w64-mingw32-gcc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run .ci/setup", pytrace=False)
    top = tmp_path_factory.mktemp("update-windows")
    for name in ("key", "other"):
        made = wvwasi("signer", "generate", "-w", top / name, "--password", "pw")
        assert made.returncode == 0, made.stderr
    cpython = windows_cpython(CACHE.parent / "windows-python")
    update = {"endpoints": [f"http://127.0.0.1:{server.port}/{{{{target}}}}/latest.json"],
              "pubkey": (top / "key.pub").read_text().strip(),
              "windows": {"install_mode": "quiet"}}
    built = {}
    for version in ("1.0.0", "1.0.1"):
        project = write_project(top / f"project-{version}", SERVICES, resolve_wasm=wasm_fixture,
                                app={"name": "Upwin", "identifier": "dev.wvwasi.upwin",
                                     "version": version},
                                extra={"bundle": {"windows": WINDOWS},
                                       "update": update})
        proc = wvwasi("build", project, "--platform", "windows", "--windows-python", cpython,
                      "-f", "zip", "-f", "nsis", "-o", top / version, "--json", timeout=3000,
                      env=cli_env(WVWASI_SIGNING_PRIVATE_KEY=str(top / "key"),
                                  WVWASI_SIGNING_PRIVATE_KEY_PASSWORD="pw"))
        assert proc.returncode == 0, proc.stderr
        built[version] = {a["format"]: Path(a["path"])
                          for a in json.loads(proc.stdout)["artefacts"]}
    setup = built["1.0.1"]["nsis"]
    latest = json.loads((top / "1.0.1" / "latest.json").read_text())
    assert latest["platforms"]["windows-x86_64-nsis"]["url"] == setup.name
    server.routes["/windows/latest.json"] = json.dumps(latest).encode()
    server.routes[f"/windows/{setup.name}"] = setup.read_bytes()
    return {"top": top, "built": built, "latest": latest, "setup": setup}


@pytest.fixture(scope="module")
def wine(releases: dict[str, Any]) -> Wine:
    """A prefix with 1.0.0 installed by its setup."""
    top = releases["top"]
    wine = Wine(top / "prefix", top / "stub-logs")
    wine.add_wine_8_0_shims()
    assert wine.run(releases["built"]["1.0.0"]["nsis"], "/S", timeout=600) == 0
    return wine


def folder(wine: Wine) -> Path:
    return wine.local_appdata / "Programs" / "upwin"


def update(wine: Wine) -> tuple[int, str]:
    """`APP.exe --update`, then every process of the prefix (the setup) to its end."""
    proc = subprocess.run(["wine", folder(wine) / EXE, "--update"], env=wine.env,
                          capture_output=True, text=True, errors="replace", timeout=600)
    wine.wait()
    return proc.returncode, proc.stdout + proc.stderr


def self_test_passes(wine: Wine) -> None:
    out = wine.output(folder(wine) / EXE, "--self-test=headless", timeout=600)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, out[-3000:]
    report = json.loads(lines[-1])
    assert report["ok"] is True and set(report["services"]) == set(SERVICES), report


def version(wine: Wine) -> str:
    return wine.output(folder(wine) / EXE, "--version").strip()


def test_a_bad_setup_leaves_the_installed_version(wine: Wine, releases: dict[str, Any],
                                                  server: Server):
    setup = releases["setup"]
    route = f"/windows/{setup.name}"
    good_latest = server.routes["/windows/latest.json"]
    tampered = bytearray(setup.read_bytes())
    tampered[len(tampered) // 2] ^= 1
    signed = wvwasi("signer", "sign", setup, "-k", releases["top"] / "other", "-p", "pw")
    assert signed.returncode == 0, signed.stderr
    other_sig = base64.b64encode(Path(f"{setup}.sig").read_bytes()).decode()
    wrong_key = json.loads(good_latest)
    wrong_key["platforms"]["windows-x86_64-nsis"]["signature"] = other_sig
    before = installed(folder(wine))
    try:
        server.routes[route] = bytes(tampered)
        status, out = update(wine)
        assert status == 1 and "signature does not match" in out, out
        server.routes[route] = setup.read_bytes()
        server.routes["/windows/latest.json"] = json.dumps(wrong_key).encode()
        status, out = update(wine)
        assert status == 1 and "the signature was made with key" in out, out
    finally:
        server.routes[route] = setup.read_bytes()
        server.routes["/windows/latest.json"] = good_latest
    assert installed(folder(wine)) == before
    assert not list(folder(wine).parent.glob(".upwin.update-*"))
    assert version(wine) == "Upwin 1.0.0"
    self_test_passes(wine)


def test_update_through_the_nsis_setup(wine: Wine, releases: dict[str, Any]):
    assert version(wine) == "Upwin 1.0.0"
    status, out = update(wine)
    assert status == 0, out
    assert "Upwin 1.0.1 is being installed by its setup" in out, out
    assert version(wine) == "Upwin 1.0.1"
    assert installed(folder(wine)) == app_files(releases["built"]["1.0.1"]["zip"]) | {
        "uninstall.exe"}
    self_test_passes(wine)
    # the next check: nothing newer, and the kept setup's folder is removed
    status, out = update(wine)
    assert status == 0 and "Upwin 1.0.1 is the newest version" in out, out
    assert not list(folder(wine).parent.glob(".upwin.update-*"))

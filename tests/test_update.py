"""Signed auto-update, for real: an app built as 0.1.0 (tar.gz, onefile, deb, rpm) updates itself
to a 0.2.0 built and signed by `wvwasi build`, from a loopback HTTP server (the deb also as a
user, through the real pkexec and polkit); every bad answer leaves the installed app unchanged,
and an update killed at any step leaves an app that starts."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
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
                  "--format", "rpm", "--out", out,
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
                                        "linux-x86_64-onefile", "linux-x86_64-deb",
                                        "linux-x86_64-rpm"}
    assert latest["platforms"]["linux-x86_64"] == latest["platforms"]["linux-x86_64-targz"]
    for fmt, key in (("tar.gz", "targz"), ("onefile", "onefile"), ("deb", "deb"),
                     ("rpm", "rpm")):
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
    latest = server.routes["/linux/x86_64/0.1.0/latest.json"]
    try:
        subprocess.run(["dpkg", "-i", releases["old"]["deb"]], check=True, capture_output=True)
        assert _version(exe, tmp_path) == "wvwasi Update Test 0.1.0"
        _older_offered_as_newer(releases, server, "deb")
        proc = _run(exe, "--update", cache=tmp_path)  # dpkg -i would take it (a downgrade)
        server.routes["/linux/x86_64/0.1.0/latest.json"] = latest
        assert proc.returncode == 1, proc
        assert proc.stderr.strip().endswith(
            f"the update's deb is '{SLUG} 0.1.0', not '{SLUG} 0.2.0' as announced: the update "
            "was not installed"), proc.stderr
        server.routes[route] = _tamper(releases["new"]["deb"].read_bytes())
        proc = _run(exe, "--update", cache=tmp_path)
        assert proc.returncode == 1 and "the signature does not match" in proc.stderr, proc
        assert _dpkg_version() == "0.1.0"
        server.routes[route] = good
        # a user's app: the package is downloaded and verified where the user may write
        # (not beside /opt/<slug>), then needs pkexec, which is not on this PATH
        user = subprocess.run([shutil.which("setpriv"), "--reuid=nobody", "--regid=nogroup",
                               "--clear-groups", exe, "--update"], capture_output=True,
                              text=True, timeout=300,
                              env={"PATH": str(tmp_path), "HOME": "/nonexistent"})
        assert user.returncode == 1, user
        assert user.stderr.strip().endswith("installing a package needs root and pkexec is "
                                            "missing: run the update as root "
                                            "(`sudo APP --update`)"), user.stderr
        assert _dpkg_version() == "0.1.0"
        # a file name in latest.json that reads as options: dpkg gets it as part of a path
        _offer(releases, server, "deb", releases["new"]["deb"],
               "--force-all%20--admindir=..%2F..%2Ftmp%2Fplanted")
        proc = _run(exe, "--update", cache=tmp_path)
        server.routes["/linux/x86_64/0.1.0/latest.json"] = latest
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "wvwasi Update Test 0.2.0 installed (was 0.1.0)"
        assert _dpkg_version() == "0.2.0" and not Path("/tmp/planted").exists()
        assert _version(exe, tmp_path) == "wvwasi Update Test 0.2.0"
        assert _run(exe, "--self-test=headless", cache=tmp_path).returncode == 0
        assert not list(Path("/opt").glob(f".{SLUG}.update-*"))
        assert not list(Path(tempfile.gettempdir()).glob(f"{SLUG}.update-*"))
    finally:
        server.routes[route] = good
        server.routes["/linux/x86_64/0.1.0/latest.json"] = latest
        subprocess.run(["dpkg", "--purge", SLUG], capture_output=True)
    assert not exe.exists()


def test_a_deb_whose_new_dependency_is_missing_is_left_unconfigured(
        releases: dict[str, Any], server: Server, tmp_path: Path):
    """dpkg -i installs no dependencies: a signed 0.2.0 that depends on a package this system
    lacks is unpacked over 0.1.0 and left unconfigured (dpkg's way: `apt-get -f install`
    finishes it); the user gets dpkg's reason in one line."""
    if os.geteuid() != 0:
        pytest.skip("installs a real package with dpkg: needs root")
    missing = "wvwasi-test-missing-package"
    parts, control = tmp_path / "parts", tmp_path / "control"
    parts.mkdir()
    control.mkdir()
    # the deb's control.tar.xz gets the dependency; its data.tar.xz is kept as it is
    subprocess.run(["ar", "x", releases["new"]["deb"]], cwd=parts, check=True)
    subprocess.run(["tar", "-xJf", parts / "control.tar.xz", "-C", control], check=True)
    fields = control / "control"
    fields.write_text(re.sub(r"^Depends: ", f"Depends: {missing}, ", fields.read_text(),
                             flags=re.M))
    subprocess.run(["tar", "-cJf", parts / "control.tar.xz", "-C", control, "."], check=True)
    deb = tmp_path / releases["new"]["deb"].name
    subprocess.run(["ar", "rc", deb, *(parts / n for n in ("debian-binary", "control.tar.xz",
                                                          "data.tar.xz"))], check=True)
    endpoint, route = "/linux/x86_64/0.1.0/latest.json", f"/offered/needs-{deb.name}"
    saved = _offer(releases, server, "deb", deb, f"needs-{deb.name}")
    exe = Path("/opt") / SLUG / SLUG
    try:
        subprocess.run(["dpkg", "-i", releases["old"]["deb"]], check=True, capture_output=True)
        proc = _run(exe, "--update", cache=tmp_path)
        assert proc.returncode == 1, proc
        assert proc.stderr.strip() == (
            f"{SLUG}: update failed: dpkg -i failed (status 1): dpkg: dependency problems "
            f"prevent configuration of {SLUG}: {SLUG} depends on {missing}; however: Package "
            f"{missing} is not installed."), proc.stderr
        status = subprocess.run(["dpkg-query", "-W", "-f", "${Version} ${Status}", SLUG],
                                capture_output=True, text=True).stdout
        assert status == "0.2.0 install ok unpacked"
    finally:
        server.routes[endpoint] = saved
        del server.routes[route]
        subprocess.run(["dpkg", "--purge", SLUG], capture_output=True)
    assert not exe.exists()


#: Runs "$@" in mount and PID namespaces of its own, with a system D-Bus and polkit of their
#: own: /run/dbus and /etc/polkit-1/rules.d are private tmpfs there (nothing changes outside),
#: polkitd is started by D-Bus activation as on any system, and whatever still runs when the
#: script (the namespace's init) exits is killed. $1: a polkit rule or ""; $2: bus | nobus.
#: With $AGENT_SCRIPT, the command starts once that polkit agent is registered for its process.
POLKIT_SANDBOX = r"""
set -e
mount -t tmpfs -o mode=755 tmpfs /run/dbus
mount -t tmpfs -o mode=755 tmpfs /etc/polkit-1/rules.d
[ -z "$1" ] || printf '%s\n' "$1" > /etc/polkit-1/rules.d/50-wvwasi-test.rules
if [ "$2" = bus ]; then
  dbus-daemon --system --nofork --nopidfile 2>/dev/null &
  i=0
  until [ -S /run/dbus/system_bus_socket ]; do
    i=$((i + 1)); [ $i -lt 200 ] || { echo "no system bus" >&2; exit 99; }; sleep 0.05
  done
fi
shift 2
set +e
if [ -n "$AGENT_SCRIPT" ]; then  # the pid stays the same through setpriv's exec of the app
  sh -c 'i=0; until [ -e /run/dbus/agent-ready ]; do
           i=$((i + 1)); [ $i -lt 600 ] || { echo "no polkit agent" >&2; exit 98; }; sleep 0.05
         done; exec "$@"' command "$@" &
  command=$!
  "$AGENT_PYTHON" "$AGENT_SCRIPT" "$command" /run/dbus/agent-ready &
  wait "$command"
else
  "$@"
fi
"""


def _user_update_with_polkit(exe: Path, rule: str, bus: bool,
                             agent: bool = False) -> subprocess.CompletedProcess[str]:
    """`exe --update` as nobody, in the polkit sandbox above (`agent`: with an authentication
    agent that cancels, tests/polkit_agent.py)."""
    script = Path(__file__).with_name("polkit_agent.py") if agent else ""
    return subprocess.run(
        ["unshare", "--fork", "--pid", "--mount-proc", "--mount", "--propagation", "private",
         "sh", "-c", POLKIT_SANDBOX, "sandbox", rule, "bus" if bus else "nobus",
         "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", str(exe), "--update"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent", "AGENT_SCRIPT": str(script),
             "AGENT_PYTHON": sys.executable})


def _polkit_rule(result: str, command_line: str = "") -> str:
    """A rule answering `result` to nobody's pkexec (of exactly `command_line`, a regex)."""
    check = f" && /^{command_line}$/.test(action.lookup('command_line'))" if command_line else ""
    return ("polkit.addRule(function(action, subject) {\n"
            "  if (action.id == 'org.freedesktop.policykit.exec' && subject.user == 'nobody'"
            f"{check}) {{\n    return polkit.Result.{result};\n  }}\n}});")


def test_a_user_s_deb_updates_through_the_real_pkexec(releases: dict[str, Any], tmp_path: Path):
    """A user's app (nobody) updates the deb through the real pkexec and polkitd, on a system
    bus of the test's own (POLKIT_SANDBOX). polkit grants nobody the exact command line
    `/usr/bin/dpkg -i /tmp/<slug>.update-*/download/<0.2.0's deb>` without an authentication
    agent (nothing else), so the update shows the argv the app hands pkexec. Before, polkit
    saying no, no agent to ask for the password, no polkit authority at all, and the user
    cancelling in an agent: one line each, 0.1.0 stays installed."""
    if os.geteuid() != 0:
        pytest.skip("installs a real package with dpkg and runs polkit: needs root")
    assert shutil.which("pkexec") == "/usr/bin/pkexec", "pkexec missing: .ci/setup installs it"
    exe = Path("/opt") / SLUG / SLUG
    assert not exe.parent.exists()
    deb = re.escape(releases["new"]["deb"].name)
    exact = rf"\/usr\/bin\/dpkg -i \/tmp\/{re.escape(SLUG)}\.update-[^\/ ]+\/download\/{deb}"
    refused = {  # (rule, system bus, agent) -> pkexec's status, what it says
        (_polkit_rule("NO"), True, False):
            (127, "Error executing command as another user: Not authorized"),
        ("", True, False):
            (127, "Error creating textual authentication agent: Error opening current "
                  "controlling terminal for the process (`/dev/tty'): No such device or address"),
        ("", False, False):
            (127, "Error getting authority: Error initializing authority: Could not connect: "
                  "No such file or directory"),
        ("", True, True): (126, "Error executing command as another user: Request dismissed"),
    }
    try:
        subprocess.run(["dpkg", "-i", releases["old"]["deb"]], check=True, capture_output=True)
        for (rule, bus, agent), (status, said) in refused.items():
            proc = _user_update_with_polkit(exe, rule, bus, agent)
            assert proc.returncode == 1, proc
            assert proc.stderr.strip() == (f"{SLUG}: update failed: pkexec did not run dpkg -i as "
                                           f"root (status {status}: {said}): the update was not "
                                           "installed"), proc.stderr
            assert _dpkg_version() == "0.1.0"
        proc = _user_update_with_polkit(exe, _polkit_rule("YES", exact), True)
        assert proc.returncode == 0, proc
        assert proc.stdout.strip() == "wvwasi Update Test 0.2.0 installed (was 0.1.0)"
        assert _dpkg_version() == "0.2.0"
        assert _run(exe, "--self-test=headless", cache=tmp_path).returncode == 0
        assert not list(Path(tempfile.gettempdir()).glob(f"{SLUG}.update-*"))
    finally:
        subprocess.run(["dpkg", "--purge", SLUG], capture_output=True)
    assert not exe.exists()


#: What the rpm Requires (besides rpmlib() features): Fedora's names of the GTK webview's
#: packages and GStreamer's plugins.
RPM_REQUIRES = ["gobject-introspection", "gstreamer1-plugins-base", "gstreamer1-plugins-good",
                "gtk3", "webkit2gtk4.1"]
SYSTEM_BASE = "wvwasi-test-system-base"


def _rpm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Debian's rpm, on the database in $HOME/.rpmdb (Debian's `%_dbpath`)."""
    return subprocess.run(["rpm", *map(str, args)], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def _rpm_version() -> str:
    out = _rpm("-q", "--qf", "%{VERSION}", SLUG)
    return out.stdout if out.returncode == 0 else ""


def _system_base(top: Path, provides: list[str]) -> Path:
    """An rpm (built by rpmbuild) providing `provides`: what a Fedora desktop has installed
    before the app, and Debian's empty rpm database lacks."""
    top.mkdir()
    spec = top / "base.spec"
    spec.write_text("\n".join([
        f"Name: {SYSTEM_BASE}", "Version: 1", "Release: 1", "License: MIT",
        "Summary: the system packages the app requires", "BuildArch: noarch",
        *(f"Provides: {p}" for p in provides),
        "%description", "What a Fedora desktop with WebKitGTK provides.", "%files", ""]))
    built = subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "-bb", str(spec)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return next((top / "RPMS" / "noarch").glob("*.rpm"))


def test_rpm_installed_by_rpm_updates_through_rpm(releases: dict[str, Any], server: Server,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The rpm path for real as root, with Debian's `rpm` on a database of this test's own
    (Debian keeps it in ~/.rpmdb: HOME is a temporary folder here, for rpm and the app), set
    to refuse unsigned packages as rpm 6 and Fedora 45 do. The database first gets a package
    providing what the app Requires (as a Fedora desktop has it), then `rpm -i` installs
    0.1.0; `--update` installs 0.2.0 with `rpm -U --oldpackage --nosignature`.
    A tampered package and another key's signature are refused before rpm runs; with a
    required package missing, rpm refuses 0.2.0 and 0.1.0 stays as it was."""
    if os.geteuid() != 0:
        pytest.skip("installs a real package into /opt with rpm: needs root")
    from wvwasi.runtime.update.install import detect

    home = tmp_path / "home"
    home.mkdir()
    # rpm 6's default, Fedora 45's: only packages with a verified OpenPGP signature install
    (home / ".rpmmacros").write_text("%_pkgverify_level all\n")
    monkeypatch.setenv("HOME", str(home))
    exe = Path("/opt") / SLUG / SLUG
    assert not exe.parent.exists() and not _dpkg_version()
    old, new = releases["old"]["rpm"], releases["new"]["rpm"]
    assert old.name == f"{SLUG}-0.1.0-1.x86_64.rpm"
    requires = [r for r in _rpm("-qp", "--requires", old).stdout.splitlines()
                if not r.startswith("rpmlib(")]
    assert sorted(requires) == RPM_REQUIRES
    base = _system_base(tmp_path / "rpmbuild", RPM_REQUIRES)
    route, endpoint = f"/releases/v0.2.0/{new.name}", "/linux/x86_64/0.1.0/latest.json"
    good, latest = server.routes[route], server.routes[endpoint]
    cache = tmp_path / "cache"

    def update(expected: str) -> str:
        proc = _run(exe, "--update", cache=cache)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, proc
        assert lines[0].startswith(f"{SLUG}: update failed: ") and expected in lines[0], lines
        assert _rpm_version() == "0.1.0"
        assert _version(exe, cache) == "wvwasi Update Test 0.1.0"
        return lines[0]

    try:
        missing = _rpm("-i", "--nosignature", old)  # what Debian's empty database says
        assert missing.returncode == 1 and "gtk3 is needed by" in missing.stderr, missing
        unsigned = _rpm("-i", "--nodeps", old)  # the user installs it with --nosignature
        assert unsigned.returncode == 1 and "does not verify: no signature" in unsigned.stderr
        for package in (base, old):
            installed = _rpm("-i", "--nosignature", package)
            assert installed.returncode == 0, installed.stderr
        assert _rpm_version() == "0.1.0"
        assert _rpm("-q", "-f", exe.parent).stdout.strip() == f"{SLUG}-0.1.0-1.x86_64"
        assert detect(exe).bundle == "rpm" and detect(exe).path == exe.parent
        # a tar.gz unpacked into /opt is no package's: it updates as a tar.gz
        assert detect(Path("/opt") / f"{SLUG}-0.1.0-linux-x86_64" / SLUG).bundle == "targz"
        assert _version(exe, cache) == "wvwasi Update Test 0.1.0"

        server.routes[route] = _tamper(good)
        update("the signature does not match")
        server.routes[route] = good
        other = json.loads(latest)
        other["platforms"]["linux-x86_64-rpm"]["signature"] = _other_key_signature(releases,
                                                                                    new)
        server.routes[endpoint] = json.dumps(other).encode()
        update("the signature was made with key")
        server.routes[endpoint] = latest
        # an older signed rpm announced as 0.2.0: rpm -U --oldpackage would install it
        _older_offered_as_newer(releases, server, "rpm")
        update(f"the update's rpm is '{SLUG} 0.1.0', not '{SLUG} 0.2.0' as announced")
        server.routes[endpoint] = latest

        # a system without a package 0.2.0 requires: rpm checks before it changes anything
        assert _rpm("-e", "--nodeps", SYSTEM_BASE).returncode == 0
        line = update("rpm -U failed (status 2): error: Failed dependencies: ")
        for name in RPM_REQUIRES:  # each, as rpm lists them
            assert f"{name} is needed by {SLUG}-0.2.0-1.x86_64" in line, line
        assert _rpm("-i", "--nosignature", base).returncode == 0

        # another rpm holds the database's lock (rpm fails at once then): the update tries
        # again every second, and installs once the lock is free
        with open(home / ".rpmdb" / ".rpm.lock", "a+") as lock:
            fcntl.lockf(lock, fcntl.LOCK_EX)
            updating = subprocess.Popen([str(exe), "--update"], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                        text=True, env={**os.environ, "XDG_CACHE_HOME": str(cache)})
            refused = 0
            deadline = time.monotonic() + 120
            while refused < 2 and time.monotonic() < deadline and updating.poll() is None:
                tries = [pid for pid, cmd in _children(updating.pid) if cmd.startswith("rpm -U")]
                if tries:  # an rpm -U while the lock is held: refused
                    while Path(f"/proc/{tries[0]}").exists() and updating.poll() is None:
                        time.sleep(0.005)
                    refused += 1
                time.sleep(0.005)
            assert refused == 2 and updating.poll() is None, updating.communicate()
            fcntl.lockf(lock, fcntl.LOCK_UN)
        out, err = updating.communicate(timeout=300)
        assert updating.returncode == 0, err
        assert out.strip() == "wvwasi Update Test 0.2.0 installed (was 0.1.0)"
        assert _rpm_version() == "0.2.0"
        verified = _rpm("-V", SLUG)  # every file as the package says
        assert verified.returncode == 0, verified.stdout
        assert _version(exe, cache) == "wvwasi Update Test 0.2.0"
        assert _run(exe, "--self-test=headless", cache=cache).returncode == 0
        assert not list(Path("/opt").glob(f".{SLUG}.update-*"))
        assert not list(Path(tempfile.gettempdir()).glob(f"{SLUG}.update-*"))
    finally:
        server.routes[route], server.routes[endpoint] = good, latest
        for package in (SLUG, SYSTEM_BASE):  # one by one: rpm -e of a missing one does none
            _rpm("-e", "--nodeps", package)
    assert not exe.parent.exists() and not _rpm("-qa").stdout


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


def _offer(releases: dict[str, Any], server: Server, bundle: str, package: Path,
           name: str) -> bytes:
    """latest.json announcing 0.2.0 with `package` (signed with the app's own key) served as
    `name`; the real latest.json, to put back."""
    from wvwasi.packager.signing import parse_secret_key, sign_file

    endpoint = "/linux/x86_64/0.1.0/latest.json"
    latest = server.routes[endpoint]
    key = parse_secret_key((releases["top"] / "key").read_text(), "pw")
    entry = json.loads(latest)
    entry["platforms"][f"linux-x86_64-{bundle}"] = {
        "url": f"http://127.0.0.1:{server.port}/offered/{name}",
        "signature": base64.b64encode(sign_file(package, key).encode()).decode()}
    server.routes[f"/offered/{name}"] = package.read_bytes()
    server.routes[endpoint] = json.dumps(entry).encode()
    return latest


def _older_offered_as_newer(releases: dict[str, Any], server: Server, bundle: str) -> bytes:
    """0.1.0's package offered as 0.2.0 (a mirror replaying an old signed release)."""
    old = releases["old"][bundle]
    return _offer(releases, server, bundle, old, old.name)


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

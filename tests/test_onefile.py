"""The Linux `onefile`: a sh launcher + the app folder as .tar.gz, extracted once into
`$XDG_CACHE_HOME/wvwasi-code/<identifier>/onefile/<digest>/` and run from there. Real builds
(shared frozen runtime), real launches of the built file (`--self-test` under Xvfb)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from build_helpers import CACHE, SDE, cli_env, module_id, new_project, wvwasi
from xvfb import xvfb

IDENT = "dev.wvwasi.tests.onefile"
CODE = "wvwasi-code"  # the code folder in the user cache (runtime/paths.py)
SLUG = "wvwasi-onefile-test"
FALLBACK = "running from a temporary copy"


@pytest.fixture(scope="module")
def display() -> Any:
    with xvfb() as name:
        yield name


def build(project: Path, out: Path, *formats: str, **env: str) -> dict[str, Path]:
    args = [a for f in formats for a in ("--format", f)]
    proc = wvwasi("build", project, *args, "--out", out, "--json",
                  env=cli_env(SOURCE_DATE_EPOCH=SDE, **env))
    assert proc.returncode == 0, proc.stderr
    return {a["format"]: Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    top = tmp_path_factory.mktemp("onefile")
    project = new_project(top, "wvwasi Onefile Test", identifier=IDENT)
    return {**build(project, top / "out", "onefile", "tar.gz"), "project": project, "top": top}


def launch(exe: Path, cache: Path, *args: str, display: str | None = None,
           **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "XDG_CACHE_HOME": str(cache), **env}
    if display:
        full["DISPLAY"] = display
    return subprocess.run([str(exe), *args], env=full, capture_output=True, text=True,
                          timeout=180)


def self_test_ok(proc: subprocess.CompletedProcess[str]) -> bool:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode == 0 and bool(lines) and json.loads(lines[-1])["ok"]


def archive_of(exe: Path) -> bytes:
    """The .tar.gz behind the launcher (from the offset its script names)."""
    data = exe.read_bytes()
    offset = int(re.search(rb"\noffset=(\d+)\n", data)[1])
    return data[offset - 1:]


def folders(cache: Path) -> list[Path]:
    """The extracted versions in the app's onefile cache (dot entries aside)."""
    base = cache / CODE / IDENT / "onefile"
    return sorted(p for p in base.iterdir() if not p.name.startswith(".")) if base.is_dir() \
        else []


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of the folder and everything in it."""
    return {str(p): (p.lstat().st_ino, p.lstat().st_mtime_ns)
            for p in [folder, *folder.rglob("*")]}


def test_the_file_is_a_launcher_followed_by_the_tar_gz(built: dict[str, Path]):
    exe = built["onefile"]
    assert exe.read_bytes().startswith(b"#!/bin/sh\n") and os.access(exe, os.X_OK)
    assert archive_of(exe) == built["tar.gz"].read_bytes()  # the same cached parts
    digest = hashlib.sha256(archive_of(exe)).hexdigest()
    assert f"\ndigest={digest}\n".encode() in exe.read_bytes()
    script = exe.read_bytes()[:-len(archive_of(exe))]
    assert script.endswith(b"\nexit $?\n")  # sh never reads the archive as commands
    subprocess.run(["sh", "-n"], input=script, check=True)  # it parses (POSIX sh: dash)


def test_first_launch_extracts_and_later_ones_reuse_the_folder(
        built: dict[str, Path], display: str, tmp_path: Path):
    exe, cache = built["onefile"], tmp_path / "cache"
    assert self_test_ok(launch(exe, cache, "--self-test", display=display))
    (folder,) = folders(cache)
    assert folder.name == hashlib.sha256(archive_of(exe)).hexdigest()[:16]
    top = folder / exe.name.removesuffix("-onefile")
    assert (top / "app" / "precompiled" / f"{module_id(top / 'app', 'greet')}.cwasm").is_file()
    assert (top / "_internal").is_dir()
    before = snapshot(folder)
    assert self_test_ok(launch(exe, cache, "--self-test", display=display))
    assert snapshot(folder) == before  # nothing extracted or touched again
    base = cache / CODE / IDENT / "onefile"
    assert [p.name for p in base.iterdir() if p.name.startswith(".")] \
        == [".lock"]  # no temporary folder left
    assert FALLBACK not in launch(exe, cache, "--no-such-option").stderr


def test_arguments_and_exit_status_pass_through(built: dict[str, Path], tmp_path: Path):
    proc = launch(built["onefile"], tmp_path / "cache", "--no-such-option", "two words")
    assert proc.returncode == 2  # the app's own usage error, through exec
    assert proc.stderr.startswith("usage: ") and "--self-test" in proc.stderr
    proc = launch(built["onefile"], tmp_path / "cache", "--self-test=headless")
    assert self_test_ok(proc), proc.stdout + proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["mode"] == "headless"


@pytest.mark.parametrize("damage", ["delete a file", "truncate the marker", "no marker",
                                    "an added file", "a file of another size"])
def test_a_damaged_folder_is_extracted_again(built: dict[str, Path], display: str,
                                             tmp_path: Path, damage: str):
    exe, cache = built["onefile"], tmp_path / "cache"
    assert launch(exe, cache, "--no-such-option").returncode == 2  # extracted
    (folder,) = folders(cache)
    top = folder / exe.name.removesuffix("-onefile")
    index = top / "app" / "ui" / "index.html"
    original = index.read_bytes()
    marker = folder / ".wvwasi-onefile"
    if damage == "delete a file":
        index.unlink()
    elif damage == "truncate the marker":
        marker.write_bytes(marker.read_bytes()[:10])
    elif damage == "no marker":
        marker.unlink()
    elif damage == "an added file":
        (top / "app" / "ui" / "planted.js").write_text("alert(1)")
    else:
        index.write_bytes(original + b"<!-- changed -->")
    assert self_test_ok(launch(exe, cache, "--self-test", display=display))
    (again,) = folders(cache)
    assert again == folder and index.read_bytes() == original
    assert not (top / "app" / "ui" / "planted.js").exists()
    assert marker.read_text().startswith(hashlib.sha256(archive_of(exe)).hexdigest() + " ")


def test_a_partial_extraction_and_older_versions_are_replaced(built: dict[str, Path],
                                                              tmp_path: Path):
    exe, cache = built["onefile"], tmp_path / "cache"
    base = cache / CODE / IDENT / "onefile"
    digest = hashlib.sha256(archive_of(exe)).hexdigest()
    (base / digest[:16] / "half").mkdir(parents=True)  # killed mid-extraction: no marker
    (base / "0123456789abcdef" / "old-version").mkdir(parents=True)  # an older build
    (base / ".extract-999999" / "killed").mkdir(parents=True)  # a launch killed meanwhile
    assert launch(exe, cache, "--no-such-option").returncode == 2
    assert [p.name for p in folders(cache)] == [digest[:16]]
    assert not (base / digest[:16] / "half").exists()
    assert [p.name for p in base.iterdir() if p.name.startswith(".")] == [".lock"]


def test_concurrent_first_launches_both_succeed(built: dict[str, Path], display: str,
                                                tmp_path: Path):
    exe, cache = built["onefile"], tmp_path / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "DISPLAY": display}
    procs = [subprocess.Popen([str(exe), "--self-test"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert self_test_ok(subprocess.CompletedProcess(p.args, p.returncode, out)), out + err
        assert FALLBACK not in err
    (folder,) = folders(cache)
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == [".lock"]
    before = snapshot(folder)
    assert launch(exe, cache, "--no-such-option").returncode == 2
    assert snapshot(folder) == before


def test_concurrent_first_launches_without_flock(built: dict[str, Path], tmp_path: Path):
    """Where no `flock` exists the launches race; the loser finds the winner's folder."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("sh", "tail", "gzip", "tar", "ls", "awk", "cksum", "chmod", "mkdir", "mv",
                 "rm", "touch", "mktemp", "cat", "sha256sum", "sync"):
        (tools / tool).symlink_to(shutil.which(tool))
    exe, cache = built["onefile"], tmp_path / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PATH": str(tools)}
    procs = [subprocess.Popen([str(exe), "--self-test=headless"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0 and json.loads(out.splitlines()[-1])["ok"], out + err
    (folder,) = folders(cache)
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".extract-")]
    assert not leftovers and (folder / ".wvwasi-onefile").is_file()


def _in_mount_namespace(cache: Path, options: str, exe: Path, *args: str,
                        **env: str) -> subprocess.CompletedProcess[str]:
    """Run `exe` with a fresh tmpfs mounted (`options`) at its onefile cache folder, in a
    private mount namespace (nothing outside sees the mount). (Only that folder: the app
    itself needs its writable compile cache beside it.)"""
    base = cache / CODE / IDENT / "onefile"
    base.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o {options} tmpfs "$1" && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(base), str(exe), *args],
        env={**os.environ, "XDG_CACHE_HOME": str(cache), **env}, capture_output=True,
        text=True, timeout=180)


@pytest.mark.parametrize("cache_state", ["read-only", "full", "not a folder"])
def test_an_unwritable_cache_falls_back_to_a_temporary_copy(
        built: dict[str, Path], display: str, tmp_path: Path, cache_state: str):
    exe, cache, temp = built["onefile"], tmp_path / "cache", tmp_path / "temp"
    temp.mkdir()

    def attempt(*args: str) -> subprocess.CompletedProcess[str]:
        env = {"DISPLAY": display, "TMPDIR": str(temp)}
        if cache_state == "not a folder":
            return launch(exe, cache, *args, **env)
        options = "ro,size=1m" if cache_state == "read-only" else "size=1m"
        return _in_mount_namespace(cache, options, exe, *args, **env)

    if cache_state == "not a folder":
        (cache / CODE / IDENT).mkdir(parents=True)
        (cache / CODE / IDENT / "onefile").write_text("in the way")
    proc = attempt("--self-test")
    assert self_test_ok(proc), proc.stdout + proc.stderr
    assert f"{SLUG}: cannot extract into {cache / CODE / IDENT / 'onefile'} (read-only or full?): "\
        f"{FALLBACK}" in proc.stderr
    assert list(temp.iterdir()) == []  # the temporary copy is removed when the app exits
    proc = attempt("--no-such-option")
    assert proc.returncode == 2 and list(temp.iterdir()) == []  # exit status kept


def test_a_damaged_file_is_refused(built: dict[str, Path], tmp_path: Path):
    damaged = tmp_path / built["onefile"].name
    data = bytearray(built["onefile"].read_bytes())
    data[-1000] ^= 0xFF
    damaged.write_bytes(bytes(data))
    damaged.chmod(0o755)
    proc = launch(damaged, tmp_path / "cache", "--no-such-option")
    assert proc.returncode == 1 and "this file is damaged" in proc.stderr
    assert folders(tmp_path / "cache") == []


def test_rebuild_is_identical_and_reuses_the_compressed_runtime(built: dict[str, Path],
                                                               tmp_path: Path):
    cache = tmp_path / "wvwasi-cache"
    cache.mkdir()
    (CACHE / "runtime").mkdir(parents=True, exist_ok=True)
    (cache / "runtime").symlink_to(CACHE / "runtime", target_is_directory=True)
    project = built["project"]
    first = build(project, tmp_path / "one", "onefile", WVWASI_CACHE_DIR=str(cache))["onefile"]
    assert first.read_bytes() == built["onefile"].read_bytes()  # cold cache, same bytes
    parts = {p: p.stat().st_mtime_ns for p in (cache / "packages").iterdir()}
    assert sum(p.stat().st_size for p in parts) > 10 << 20  # the runtime, compressed once

    index = project / "ui" / "index.html"
    index.write_text(index.read_text().replace("</body>", "<p>edited</p></body>"))
    second = build(project, tmp_path / "two", "onefile", WVWASI_CACHE_DIR=str(cache))["onefile"]
    new = [p for p in (cache / "packages").iterdir() if p not in parts]
    assert sum(p.stat().st_size for p in new) < 1 << 20  # only the small part with the UI
    assert second.read_bytes() != first.read_bytes()

    user_cache = tmp_path / "user-cache"
    assert launch(first, user_cache, "--no-such-option").returncode == 2
    assert launch(second, user_cache, "--no-such-option").returncode == 2
    (folder,) = folders(user_cache)  # the older version was swept
    assert folder.name == hashlib.sha256(archive_of(second)).hexdigest()[:16]

"""Issue 23, finding 1: nothing wvwasi runs or loads as code is within a service's reach, and
code is checked against digests a service cannot write.

- The Linux onefile launcher (the real template, in front of a small app folder whose
  "executable" is a shell script, so no PyInstaller build is needed) extracts out of every
  variable's folder but `$HOME`; a service with `$CACHE` read-write (the real plant.c guest)
  cannot reach a byte of it; read-write preopens and grants that would contain a code folder
  are refused at spawn, naming both; read-only ones still work.
- A shipped `.cwasm` swapped for another module's artefact with a consistent sidecar is not
  loaded: the payload's `payload.json` says otherwise.
- The Windows/macOS onefile (frozen_main) re-extracts after a same-size edit.
- Compile caches: another module's code with a consistent sidecar, a symlink, a FIFO, /dev/zero
  or a huge file in place of an entry (or a sidecar, or its digest kept apart) neither hangs,
  nor is shipped by a build or loaded by a run: the module is compiled again.
- The launcher: a `.lock` that is a folder, and a symlink planted for its folder (with a forged
  marker), are handled, never followed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wvwasi.packager import caches
from wvwasi.packager.formats import host_arch
from wvwasi.packager.formats.onefile import write_launcher
from wvwasi.packager.stage import StagedApp, append_payload, stage_payload
from wvwasi.runtime import frozen_main
from wvwasi.runtime.host import modules
from wvwasi.runtime.host.modules import (
    ModuleLoader,
    artefact_name,
    cache_entry,
    header_path,
    make_engine,
    precompile,
    sha256_file,
)
from wvwasi.runtime.host.service_host import ServiceHost, SpawnOptions
from wvwasi.runtime.manifest import Preopen, load_manifest
from wvwasi.runtime.paths import VARIABLES, PathContext, app_code_dir

IDENT = "dev.wvwasi.tests.reach"
EXE = "reach-app"
FAKE_EXE = '#!/bin/sh\necho "ran the app: $*"\n'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home: every user folder (and so every variable) beneath it."""
    home = tmp_path / "home"
    home.mkdir()
    for key, rel in (("HOME", ""), ("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_CONFIG_HOME", ".config")):
        monkeypatch.setenv(key, str(home / rel))
    monkeypatch.setenv("WVWASI_CACHE_DIR", str(home / ".cache" / "wvwasi"))
    return home


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Path:
    """`planter` writes `$CACHE` (as a service with a cache grant would); `victim` is wc."""
    return make_project(
        {"planter": {"source": "plant",
                     "preopens": [{"guest": "/cache", "host": "$CACHE", "mode": "rw"}]},
         "victim": {"source": "wc", "kind": "task"},
         "other": {"source": "echo_lines", "kind": "task"}},
        app={"identifier": IDENT})


@pytest.fixture
def launcher(project: Path, tmp_path: Path) -> Path:
    """The real onefile launcher in front of a small app folder (a shell script executable)."""
    manifest = load_manifest(project)
    root = tmp_path / "staged"
    root.mkdir()
    exe = root / EXE
    exe.write_text(FAKE_EXE)
    exe.chmod(0o755)
    stage_payload(manifest, root / "app")
    app = StagedApp(manifest, "linux", host_arch(), root, exe)
    dest = tmp_path / "out" / "reach-onefile"
    dest.parent.mkdir()
    return write_launcher(app, dest, 0)


def launch(exe: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home),
           "XDG_CACHE_HOME": str(home / ".cache")}
    return subprocess.run(["sh", str(exe), *args], env=env, capture_output=True, text=True,
                          timeout=60)


def digest16(exe: Path) -> str:
    return re.search(rb"\ndigest=([0-9a-f]{16})", exe.read_bytes())[1].decode()


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def plant(host: ServiceHost, *ops: str) -> list[str]:
    result = host.run_task("planter", options=SpawnOptions(args=ops))
    return result.stdout.decode().splitlines()


# --- the code lives where no preopen variable reaches ------------------------------------------


def test_a_service_with_cache_rw_cannot_reach_the_extracted_app(
        launcher: Path, home: Path, project: Path) -> None:
    proc = launch(launcher, home, "one", "two")
    assert proc.returncode == 0 and proc.stdout == "ran the app: one two\n", proc.stderr
    extracted = app_code_dir(IDENT) / "onefile" / digest16(launcher)
    top = next(p for p in extracted.iterdir() if not p.name.startswith("."))
    before = files_under(extracted)
    assert f"{top.name}/app/ui/index.html" in before

    manifest = load_manifest(project)
    with PathContext.for_app(manifest) as paths, ServiceHost(manifest, paths=paths) as host:
        for name in VARIABLES:
            if name != "HOME":  # $HOME holds every user folder: refused read-write below
                folder = paths.variable(name).resolve()
                assert not extracted.resolve().is_relative_to(folder), name
                assert not folder.is_relative_to(extracted.resolve()), name
        cache = paths.variable("CACHE")
        # every file of the extraction, spelled from $CACHE every way a guest could try
        targets = [os.path.relpath(extracted / rel, cache) for rel in before]
        ops = [f"w:/cache/{t}=pwned!" for t in targets]
        ops += [f"w:/cache/onefile/{digest16(launcher)}/{rel}=pwned!" for rel in before]
        ops += [f"s:{extracted}:/cache/link", "w:/cache/link/x=pwned!"]
        lines = plant(host, *ops)
    assert len(lines) == len(ops)
    assert not [line for line in lines[:-2] if line.endswith(": OK")], lines
    assert lines[-1].endswith(("ENOTCAPABLE", "EPERM", "EACCES", "ENOENT")), lines[-1]
    assert files_under(extracted) == before
    assert not (extracted / "x").exists()


@pytest.mark.parametrize("how", ["$HOME", "absolute code root", "a link to the code root",
                                 "inside the build cache", "the ui folder", "grant of home",
                                 "grant of a link to home"])
def test_a_writable_folder_that_would_reach_code_is_refused_naming_both(
        how: str, home: Path, tmp_path: Path, make_project: Callable[..., Path]) -> None:
    build_cache = home / ".cache" / "wvwasi" / "modules"
    build_cache.mkdir(parents=True)
    code_root = app_code_dir(IDENT).parent
    code_root.mkdir(parents=True)
    link = tmp_path / "innocent"
    link.symlink_to(home if "grant" in how else code_root)
    host_path = {"$HOME": "$HOME", "absolute code root": str(home / ".cache"),
                 "a link to the code root": str(link), "inside the build cache": str(build_cache),
                 "the ui folder": "ui"}.get(how)
    preopens = [] if host_path is None else [{"guest": "/x", "host": host_path, "mode": "rw"}]
    project = make_project({"planter": {"source": "plant", "preopens": preopens,
                                        "user_grants": True}}, app={"identifier": IDENT})
    manifest = load_manifest(project)
    granted = str(link if "link" in how else home)
    grants = (Preopen(guest="/g", host=granted, mode="rw"),) if host_path is None else ()
    host = ServiceHost(manifest)
    try:
        with pytest.raises(PermissionError) as info:
            host.start()  # a manifest preopen: refused at start
            host.run_task("planter", options=SpawnOptions(args=("m:/g/new",), grants=grants))
    finally:
        host.close()
    message = str(info.value)
    assert "refused read-write" in message and "service 'planter'" in message
    code = {"inside the build cache": home / ".cache" / "wvwasi",
            "the ui folder": manifest.ui.dir}.get(how, code_root)
    assert str(code.resolve()) in message, message
    assert str(home) in message or str(manifest.ui.dir) in message
    assert not (home / "new").exists()


def test_read_only_reach_and_folders_beside_the_code_still_work(
        home: Path, make_project: Callable[..., Path]) -> None:
    (home / "notes").mkdir()
    project = make_project({"planter": {"source": "plant", "user_grants": True, "preopens": [
        {"guest": "/home", "host": "$HOME", "mode": "ro"},
        {"guest": "/notes", "host": "$HOME/notes", "mode": "rw"},
        {"guest": "/cache", "host": "$CACHE", "mode": "rw"}]}}, app={"identifier": IDENT})
    with ServiceHost(load_manifest(project)) as host:
        grant = Preopen(guest="/g", host=str(home), mode="ro")
        lines = host.run_task("planter", options=SpawnOptions(
            args=("w:/notes/a=1", "w:/cache/b=2", "w:/home/c=3"), grants=(grant,))
        ).stdout.decode().splitlines()
    assert lines[:2] == ["w /notes/a: OK", "w /cache/b: OK"]
    assert not lines[2].endswith("OK")  # read-only
    assert (home / "notes" / "a").read_text() == "1"


# --- shipped artefacts are checked against the payload, not their sidecar -----------------------


def test_a_swapped_artefact_with_a_consistent_sidecar_is_not_loaded(
        project: Path, tmp_path: Path, compiles: list[Path]) -> None:
    manifest = load_manifest(project)
    victim, other = manifest.services["victim"].source, manifest.services["other"].source
    artefacts = {n: precompile(manifest.services[n].source, tmp_path / "pre" / f"{n}.cwasm")
                 for n in ("victim", "other")}
    payload = stage_payload(manifest, tmp_path / "payload", {"victim": artefacts["victim"]})
    source = load_manifest(payload).services["victim"].source  # services/<content id>.wasm
    shipped = payload / "precompiled" / artefact_name(source)
    # the attack: the other module's machine code, its sidecar rewritten to match
    shipped.unlink()
    shutil.copyfile(artefacts["other"], shipped)
    header = header_path(shipped)
    header.unlink()
    header.write_text(header_path(artefacts["other"]).read_text().replace(
        sha256_file(other), sha256_file(victim)))
    loader = ModuleLoader(make_engine(), tmp_path / "cache", payload / "precompiled")
    module = loader.load(source)
    assert compiles == [source]  # compiled from the shipped .wasm
    assert {e.name for e in module.exports} >= {"_start"}


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    original = ModuleLoader._compile_bytes

    def spy(self: ModuleLoader, wasm: Path, data: bytes) -> Any:
        calls.append(wasm)
        return original(self, wasm, data)

    monkeypatch.setattr(ModuleLoader, "_compile_bytes", spy)
    return calls


# --- Windows/macOS onefile: same-size tampering is detected -------------------------------------


def test_frozen_main_re_extracts_after_a_same_size_edit(project: Path, tmp_path: Path) -> None:
    payload = stage_payload(load_manifest(project), tmp_path / "staged" / "app")
    exe = tmp_path / "runtime.exe"
    exe.write_bytes(b"MZ not really a runtime\n" * 100)
    append_payload(exe, payload, 0)
    cache = tmp_path / "code"
    with zipfile.ZipFile(exe) as archive:
        target = frozen_main.extract_cached(archive, cache)
        index = target / "app" / "ui" / "index.html"
        original = index.read_bytes()
        index.write_bytes(b"<script>steal()</script>".ljust(len(original), b" ")[:len(original)])
        assert frozen_main.extract_cached(archive, cache) == target
        assert index.read_bytes() == original
        wasm = next((target / "app" / "services").iterdir())
        data = bytearray(wasm.read_bytes())
        data[len(data) // 2] ^= 0xFF
        wasm.write_bytes(bytes(data))
        frozen_main.extract_cached(archive, cache)
        member = f"app/{wasm.relative_to(target / 'app').as_posix()}"
        assert hashlib.sha256(wasm.read_bytes()).digest() == \
            hashlib.sha256(archive.read(member)).digest()


def test_the_loader_trusts_frozen_mains_check_only_while_the_file_is_unchanged(
        project: Path, tmp_path: Path, compiles: list[Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A launch hashes each extracted `.cwasm` once (frozen_main's check), not twice; a file
    replaced after that check is hashed again and refused."""
    manifest = load_manifest(project)
    pre = tmp_path / "pre"
    artefact = precompile(manifest.services["victim"].source, pre / "victim.cwasm")
    other = precompile(manifest.services["other"].source, pre / "other.cwasm")
    payload = stage_payload(manifest, tmp_path / "staged" / "app", {"victim": artefact})
    exe = tmp_path / "runtime.exe"
    exe.write_bytes(b"MZ not really a runtime\n" * 100)
    append_payload(exe, payload, 0)
    with zipfile.ZipFile(exe) as archive:
        frozen_main.extract_cached(archive, tmp_path / "code")  # the first launch extracts
        hashed: list[Path] = []
        original = modules.sha256_file

        def spy(path: Path, **kwargs: Any) -> str:
            hashed.append(Path(path))
            return original(path, **kwargs)

        monkeypatch.setattr(modules, "sha256_file", spy)
        app = frozen_main.extract_cached(archive, tmp_path / "code") / "app"  # a later one
    source = load_manifest(app).services["victim"].source
    shipped = app / "precompiled" / artefact_name(source)
    assert hashed.count(shipped) == 1  # frozen_main's check
    ModuleLoader(make_engine(), None, app / "precompiled").load(source)
    assert compiles == [] and hashed.count(shipped) == 1  # loaded on that check's word

    shipped.chmod(0o644)
    shipped.unlink()  # replaced after the check (by the user: no service reaches this folder)
    shutil.copyfile(other, shipped)
    ModuleLoader(make_engine(), None, app / "precompiled").load(source)
    assert hashed.count(shipped) == 2 and compiles == [source]


# --- compile caches: regular files only, bounded ------------------------------------------------


def _plant(path: Path, trap: str, genuine: Path, other: Path) -> None:
    """Put `trap` where `path` (an entry, its sidecar or its digest) was."""
    path.unlink(missing_ok=True)
    if trap == "a FIFO":
        os.mkfifo(path)
    elif trap == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif trap == "a symlink to an intact copy":  # could be swapped after the check
        copy = path.with_name("elsewhere")
        shutil.copyfile(genuine, copy)
        path.symlink_to(copy)
    elif trap == "a 5 GiB sparse file":
        with open(path, "wb") as f:
            f.truncate(5 << 30)
    else:  # another module's machine code, its sidecar rewritten to name this module
        shutil.copyfile(other, path)
        header_path(path).unlink()
        header_path(path).write_text(header_path(other).read_text().replace(
            json.loads(header_path(other).read_text())["wasm_sha256"],
            json.loads(header_path(genuine).read_text())["wasm_sha256"]))


TRAPS = [("entry", "a FIFO"), ("entry", "/dev/zero"), ("sidecar", "a FIFO"),
         ("sidecar", "/dev/zero"), ("entry", "another module's code"),
         ("entry", "a symlink to an intact copy"), ("entry", "a 5 GiB sparse file"),
         ("digest", "a FIFO"), ("digest", "/dev/zero")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("where", "trap"), TRAPS, ids=[f"{w} is {t}" for w, t in TRAPS])
def test_a_planted_compile_cache_entry_is_compiled_again_never_shipped_or_loaded(
        where: str, trap: str, project: Path, home: Path, tmp_path: Path,
        compiles: list[Path]) -> None:
    """Whoever can write the cache's `modules/` folder (not its digests beside it) plants an
    entry: `wvwasi build` ships a fresh compile of the right module, a run compiles it."""
    services = load_manifest(project).services
    wasm, other_wasm = services["victim"].source, services["other"].source
    cache = caches.compiled_dir()
    entry = cache_entry(cache, sha256_file(wasm), portable=True)
    caches.cached_precompile(wasm, tmp_path / "first-build.cwasm")
    genuine = precompile(wasm, tmp_path / "genuine.cwasm")
    other = precompile(other_wasm, tmp_path / "other.cwasm")
    good = sha256_file(genuine)
    target = {"entry": entry, "sidecar": header_path(entry),
              "digest": cache / "modules-digests" / f"{entry.name}.sha256"}[where]

    _plant(target, trap, genuine, other)
    staged = caches.cached_precompile(wasm, tmp_path / "build" / "victim.cwasm")
    assert staged.is_file() and not staged.is_symlink()
    assert sha256_file(staged) == good  # what the build stages: this module, compiled afresh
    assert entry.is_file() and not entry.is_symlink()
    assert modules.entry_digest(entry) == good  # compiled afresh, recorded apart again
    assert modules.digest_path(entry) == cache / "modules-digests" / f"{entry.name}.sha256"

    # a run (`wvwasi dev`, `exec`) with the same trap compiles instead of loading the entry
    _plant(target, trap, genuine, other)
    compiles.clear()
    module = ModuleLoader(make_engine(), cache).load(wasm)
    assert compiles == [wasm]
    assert {e.name for e in module.exports} >= {"_start"}


# --- the launcher: its lock and its folder ------------------------------------------------------


def test_a_lock_that_is_a_folder_is_replaced(launcher: Path, home: Path) -> None:
    base = app_code_dir(IDENT) / "onefile"
    (base / ".lock" / "inside").mkdir(parents=True)
    proc = launch(launcher, home, "x")
    assert proc.returncode == 0 and proc.stdout == "ran the app: x\n", proc.stderr
    assert (base / ".lock").is_file()


def test_a_planted_folder_symlink_is_not_followed(launcher: Path, home: Path,
                                                 tmp_path: Path) -> None:
    assert launch(launcher, home).returncode == 0  # a first, honest extraction
    base = app_code_dir(IDENT) / "onefile"
    real = base / digest16(launcher)
    # the attacker's copy: the same marker (it is a checksum of names, sizes and modes) and an
    # executable of the same size that does something else
    evil = tmp_path / "evil"
    shutil.copytree(real, evil, symlinks=True)
    exe = next(evil.glob(f"*/{EXE}"))
    mode = exe.stat().st_mode
    exe.chmod(0o755)
    exe.write_text(FAKE_EXE.replace("ran the app", "ran EVIL!!!"))
    exe.chmod(mode)
    subprocess.run(["chmod", "-R", "u+w", str(real)], check=True)
    shutil.rmtree(real)
    real.symlink_to(evil, target_is_directory=True)
    proc = launch(launcher, home, "y")
    assert proc.stdout == "ran the app: y\n", proc.stdout + proc.stderr
    assert real.is_dir() and not real.is_symlink()
    assert (evil / exe.relative_to(evil)).read_text().startswith("#!/bin/sh\necho \"ran EVIL")


def test_a_planted_symlink_above_the_folder_is_not_followed(launcher: Path, home: Path,
                                                            tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = app_code_dir(IDENT)
    code.parent.mkdir(parents=True)
    code.symlink_to(elsewhere, target_is_directory=True)
    proc = launch(launcher, home, "z")
    assert proc.stdout == "ran the app: z\n", proc.stderr
    assert f"{code} is a symlink, not a folder: not following it" in proc.stderr
    assert list(elsewhere.iterdir()) == []


def test_the_extracted_app_is_read_only(launcher: Path, home: Path) -> None:
    assert launch(launcher, home).returncode == 0
    extracted = app_code_dir(IDENT) / "onefile" / digest16(launcher)
    writable = [p for p in extracted.rglob("*")
                if not p.is_symlink() and p.stat().st_mode & 0o222 and p.name != ".wvwasi-onefile"]
    assert writable == []

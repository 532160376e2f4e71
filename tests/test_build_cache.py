"""Build caches: rebuilds reuse compiled services and compressed package parts yet produce the
same bytes as a clean build; the packages still install (dpkg, rpm) and run; damaged, unwritable
or full caches never give a wrong artefact; two builds at once both succeed; `wvwasi info` and
`wvwasi clean` cover every cache. Real builds with the shared frozen runtime (tests/.fixtures)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from build_helpers import (
    CACHE,
    SDE,
    cli_env,
    files_under,
    module_id,
    new_project,
    self_test,
    wvwasi,
)
from xvfb import xvfb

from wvwasi.runtime.host.modules import (
    artefact_problem,
    header_path,
    payload_digests,
    sha256_file,
)

PACKAGES = ("tar.gz", "deb", "rpm")
SLUG = "wvwasi-cache-test"


def fresh_cache(path: Path) -> Path:
    """An empty cache (compile + package caches cold) sharing the frozen runtimes."""
    path.mkdir(parents=True)
    (CACHE / "runtime").mkdir(parents=True, exist_ok=True)  # a fresh machine has frozen none yet
    (path / "runtime").symlink_to(CACHE / "runtime", target_is_directory=True)
    return path


def build(project: Path, cache: Path, out: Path, *formats: str, **env: str) -> dict[str, Any]:
    args = [a for f in formats for a in ("--format", f)]
    proc = wvwasi("build", project, *args, "--out", out, "--json",
                  env=cli_env(WVWASI_CACHE_DIR=str(cache), SOURCE_DATE_EPOCH=SDE, **env))
    assert proc.returncode == 0, proc.stderr
    return {**json.loads(proc.stdout), "stderr": proc.stderr}


def paths(report: dict[str, Any]) -> dict[str, Path]:
    return {a["format"]: Path(a["path"]) for a in report["artefacts"]}


def same_bytes(one: dict[str, Any], other: dict[str, Any], formats: tuple[str, ...]) -> None:
    a, b = paths(one), paths(other)
    for fmt in formats:
        assert a[fmt].name == b[fmt].name
        assert a[fmt].read_bytes() == b[fmt].read_bytes(), fmt


def edit_ui(project: Path, text: str) -> None:
    index = project / "ui" / "index.html"
    index.write_text(index.read_text().replace("</body>", f"<p>{text}</p></body>"))


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A project built cold, then edited and rebuilt with the now warm caches."""
    top = tmp_path_factory.mktemp("cache")
    project = new_project(top, "wvwasi Cache Test", identifier="dev.wvwasi.tests.cachetest")
    cache = fresh_cache(top / "cache")
    cold = build(project, cache, top / "out1", "dir", "onefile", *PACKAGES)
    cold_parts = set((cache / "packages").iterdir())
    edit_ui(project, "edited once")
    rebuilt = build(project, cache, top / "out2", "dir", "onefile", *PACKAGES)
    new_parts = set((cache / "packages").iterdir()) - cold_parts
    return {"top": top, "project": project, "cache": cache, "cold": cold, "rebuilt": rebuilt,
            "new_parts": new_parts}


def test_rebuild_reuses_caches_and_equals_a_clean_build(warm: dict[str, Any], tmp_path: Path):
    cache, rebuilt = warm["cache"], warm["rebuilt"]
    steps = {s["step"]: s["seconds"] for s in rebuilt["steps"]}
    assert "build services.greet" not in steps  # watched sources unchanged
    assert "services.greet is up to date" in rebuilt["stderr"]
    parts = sorted((cache / "packages").glob("part-*"))
    assert parts and any(p.name.startswith("part-xz-") for p in parts)
    assert any(p.name.startswith("part-gzip-") for p in parts)
    runtime_parts = [p for p in parts if p.name.startswith("part-xz-x86-")]
    assert runtime_parts and max(p.stat().st_size for p in runtime_parts) > 5_000_000
    # the rebuild compressed only the UI's small parts again: no runtime, no big file
    assert warm["new_parts"] and all(p.stat().st_size < 200_000 for p in warm["new_parts"])
    stamps = {p: p.stat().st_mtime_ns for p in (cache / "modules").glob("*.cwasm")}
    assert len(stamps) == 1 and next(iter(stamps)).name.endswith("-portable.cwasm")

    clean = build(warm["project"], fresh_cache(tmp_path / "clean"), tmp_path / "out",
                  "dir", "onefile", *PACKAGES)
    same_bytes(rebuilt, clean, PACKAGES)
    staged = paths(rebuilt)["dir"] / "app" / "ui" / "index.html"
    assert "edited once" in staged.read_text()


def _cpio_names(data: bytes) -> set[str]:
    """Member names of a newc cpio archive (what rpm2cpio prints)."""
    names, pos = set(), 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        size, namesize = int(data[pos + 54:pos + 62], 16), int(data[pos + 94:pos + 102], 16)
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            return names
        names.add(name.lstrip("."))
        pos = pos + 110 + namesize
        pos += -pos % 4
        pos += size + (-size % 4)


def test_rebuilt_packages_unpack_with_every_tool(warm: dict[str, Any], tmp_path: Path):
    built = paths(warm["rebuilt"])
    app_files = {"/opt/" + SLUG + "/" + p.relative_to(built["dir"]).as_posix()
                 for p in built["dir"].rglob("*") if not p.is_dir()}

    deb_root = tmp_path / "deb"
    subprocess.run(["dpkg-deb", "-x", built["deb"], deb_root], check=True)
    deb_files = {"/" + p.relative_to(deb_root).as_posix()
                 for p in deb_root.rglob("*") if not p.is_dir()}
    assert app_files < deb_files and f"/usr/bin/{SLUG}" in deb_files
    for name in ("app/ui/index.html", SLUG, "_internal/base_library.zip"):
        assert (deb_root / "opt" / SLUG / name).read_bytes() == (built["dir"] / name).read_bytes()
    info = subprocess.run(["dpkg-deb", "--info", built["deb"]], capture_output=True, text=True,
                          check=True).stdout
    assert f"Package: {SLUG}" in info and "Installed-Size:" in info
    data = tmp_path / "data.tar.xz"
    subprocess.run(["ar", "x", built["deb"], data.name], cwd=tmp_path, check=True)
    listing = subprocess.run(["xz", "--robot", "--list", data], capture_output=True, text=True,
                             check=True).stdout
    (totals,) = [line.split("\t") for line in listing.splitlines() if line.startswith("totals")]
    assert totals[1] == "1" and int(totals[2]) > 3  # one xz stream of many cached blocks

    tar_root = tmp_path / "tar"
    tar_root.mkdir()
    subprocess.run(["tar", "-xzf", built["tar.gz"], "-C", tar_root], check=True)
    (top,) = tar_root.iterdir()
    assert {"/opt/" + SLUG + "/" + p.relative_to(top).as_posix()
            for p in top.rglob("*") if not p.is_dir()} == app_files

    rpm = built["rpm"]
    checked = subprocess.run(["rpm", "-K", "-v", rpm], capture_output=True, text=True,
                             check=True).stdout
    for digest in ("Header SHA256 digest: OK", "Header SHA1 digest: OK",
                   "Payload SHA256 digest: OK", "MD5 digest: OK"):
        assert digest in checked
    info = subprocess.run(["rpm", "-qp", "--info", rpm], capture_output=True, text=True,
                          check=True).stdout
    assert f"Name        : {SLUG}\n" in info and "Build Date  : Tue Nov 14 22:13:20 2023" in info
    compressor = subprocess.run(["rpm", "-qp", "--qf", "%{PAYLOADCOMPRESSOR}", rpm],
                                capture_output=True, text=True, check=True).stdout
    assert compressor == "xz"
    cpio = subprocess.run(["rpm2cpio", rpm], capture_output=True, check=True).stdout
    rpm_files = _cpio_names(cpio)
    assert app_files < rpm_files
    listed = subprocess.run(["cpio", "-t", "--quiet"], input=cpio, capture_output=True,
                            check=True).stdout.decode().split()
    assert {name.lstrip(".") for name in listed} == rpm_files


def test_rebuilt_rpm_installs_verifies_and_self_tests(warm: dict[str, Any], tmp_path: Path):
    """rpm -i into a temporary root, then `rpm -V` checks every installed file against the
    header (digest, size, mode, mtime, owner, link target), and the app runs from there."""
    built = paths(warm["rebuilt"])
    root = tmp_path / "rpmroot"
    rpm = ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm"]
    subprocess.run([*rpm, "-i", "--nodeps", "--noscripts", built["rpm"]], check=True,
                   capture_output=True)
    verified = subprocess.run([*rpm, "-V", "--nodeps", "--noscripts", SLUG],
                              capture_output=True, text=True)
    assert verified.returncode == 0 and verified.stdout == "", verified.stdout + verified.stderr
    installed = root / "opt" / SLUG
    assert files_under(installed) == files_under(built["dir"])
    assert (installed / "app" / "ui" / "index.html").read_bytes() == \
        (built["dir"] / "app" / "ui" / "index.html").read_bytes()
    assert os.readlink(root / "usr" / "bin" / SLUG) == f"/opt/{SLUG}/{SLUG}"
    with xvfb() as display:
        code, report = self_test(installed / SLUG, display)
    assert code == 0 and report["ok"], report


def dpkg(*args: str | Path) -> None:
    """Run dpkg, waiting for the lock other dpkg/apt runs on this machine may hold."""
    for _ in range(120):
        proc = subprocess.run(["dpkg", *map(str, args)], capture_output=True, text=True)
        if proc.returncode == 0:
            return
        if "lock" not in proc.stderr:
            break
        time.sleep(1)
    raise AssertionError(f"dpkg {args}: {proc.stderr}")


def test_rebuilt_deb_installs_and_self_tests(warm: dict[str, Any]):
    deb = paths(warm["rebuilt"])["deb"]
    dpkg("-i", deb)
    try:
        with xvfb() as display:
            code, report = self_test(f"/usr/bin/{SLUG}", display)
        assert code == 0 and report["ok"], report
        page = Path("/opt", SLUG, "app", "ui", "index.html").read_text()
        assert "edited once" in page
    finally:
        dpkg("-r", SLUG)
    assert not Path("/opt", SLUG).exists()


def test_onefile_extracts_once_and_ships_the_artefact_with_a_packed_wasm(
    warm: dict[str, Any], tmp_path: Path
):
    built = paths(warm["rebuilt"])
    payload = built["dir"] / "app"
    greet = module_id(payload, "greet")
    assert not (payload / "services" / f"{greet}.wasm").exists()
    assert (payload / "services" / f"{greet}.wasm.gz").is_file()
    artefact = payload / "precompiled" / f"{greet}.cwasm"
    header = json.loads(header_path(artefact).read_text())
    listed = payload_digests(payload)[f"precompiled/{greet}.cwasm"]
    assert artefact_problem(artefact, header["wasm_sha256"], listed) is None
    assert artefact.stat().st_mode & 0o777 == 0o644  # readable by every user once installed
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "user-cache")}
    with xvfb() as display:
        for _ in range(2):
            proc = subprocess.run([built["onefile"], "--self-test"],
                                  env={**env, "DISPLAY": display}, capture_output=True,
                                  text=True, timeout=120)
            assert proc.returncode == 0, proc.stdout + proc.stderr
    base = tmp_path / "user-cache" / "wvwasi-code" / "dev.wvwasi.tests.cachetest" / "onefile"
    (folder,) = [p for p in base.iterdir() if not p.name.startswith(".")]  # (and .lock)
    top = built["onefile"].name.removesuffix("-onefile")
    assert (folder / top / "app" / "precompiled" / f"{greet}.cwasm").is_file()


def test_editing_one_service_rebuilds_and_precompiles_only_that_one(tmp_path: Path):
    project = new_project(tmp_path, "wvwasi Two Services")
    text = (project / "wvwasi.toml").read_text()
    greet = (project / "services" / "greet.c").read_text()
    (project / "services" / "hello.c").write_text(greet.replace("no name given", "no name"))
    block = text[text.index("[services.greet]"):].split("\n\n")[0]
    (project / "wvwasi.toml").write_text(text + "\n" + block.replace("greet", "hello")
                                         .replace("services/*.c", "services/hello.c")
                                         .replace('"greet"', '"hello"') + "\n")
    text = (project / "wvwasi.toml").read_text()
    (project / "wvwasi.toml").write_text(text.replace('watch = ["services/*.c"]',
                                                      'watch = ["services/greet.c"]'))
    cache = fresh_cache(tmp_path / "cache")
    first = build(project, cache, tmp_path / "out", "dir")
    assert {"build services.greet", "build services.hello"} <= {s["step"] for s in first["steps"]}
    entries = set((cache / "modules").glob("*.cwasm"))
    assert len(entries) == 2

    source = project / "services" / "hello.c"
    source.write_text(source.read_text().replace("Hello", "Hi there"))
    again = build(project, cache, tmp_path / "out", "dir")
    ran = {s["step"] for s in again["steps"] if s["step"].startswith("build services")}
    assert ran == {"build services.hello"}
    new = set((cache / "modules").glob("*.cwasm")) - entries
    assert len(new) == 1  # only hello was precompiled again
    greet_sha = sha256_file(project / "build" / "greet.wasm")
    assert all(greet_sha not in p.name for p in new)


def test_damaged_cache_entries_are_redone_not_shipped(warm: dict[str, Any], tmp_path: Path):
    cache = tmp_path / "cache"
    shutil.copytree(warm["cache"], cache, symlinks=True)
    # every cached compile and gzip part, and the smallest xz part (xz: slow to redo)
    xz = min((cache / "packages").glob("part-xz-*"), key=lambda p: p.stat().st_size)
    for entry in [*(cache / "packages").glob("part-gzip-*"), xz,
                  *(cache / "modules").glob("*.cwasm")]:
        data = bytearray(entry.read_bytes())
        data[len(data) // 2] ^= 0xFF
        entry.write_bytes(bytes(data))
    (cache / "packages" / "wasm-0.gz").write_bytes(b"junk")
    again = build(warm["project"], cache, tmp_path / "out", "dir", *PACKAGES)
    same_bytes(again, warm["rebuilt"], PACKAGES)
    payload = paths(again)["dir"] / "app"
    name = f"precompiled/{module_id(payload, 'greet')}.cwasm"
    header = json.loads(header_path(payload / name).read_text())
    assert artefact_problem(payload / name, header["wasm_sha256"],
                            payload_digests(payload)[name]) is None


def test_unwritable_or_full_cache_still_builds_the_same_packages(
    warm: dict[str, Any], tmp_path: Path
):
    formats = ("tar.gz", "rpm")  # (deb's cold xz is slow; it uses the same parts code)
    blocked = fresh_cache(tmp_path / "blocked")  # where the caches go are files: nothing writes
    for name in ("modules", "packages", "locks"):
        (blocked / name).write_text("not a folder")
    first = build(warm["project"], blocked, tmp_path / "out1", "dir", *formats)
    same_bytes(first, warm["rebuilt"], formats)

    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", full],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, mounted.stderr  # root in CI and here
    try:
        fresh_cache(full / "cache")
        second = build(warm["project"], full / "cache", tmp_path / "out2", "dir", *formats)
        same_bytes(second, warm["rebuilt"], formats)
        for part in (full / "cache" / "packages").glob("*"):
            assert not part.name.startswith(".")  # no half-written entry left behind
    finally:
        subprocess.run(["umount", full], check=True)


def test_two_builds_of_one_project_at_once_both_succeed(warm: dict[str, Any], tmp_path: Path):
    cache = fresh_cache(tmp_path / "cache")
    env = cli_env(WVWASI_CACHE_DIR=str(cache), SOURCE_DATE_EPOCH=SDE)
    out = tmp_path / "out"
    args = ["build", warm["project"], "--format", "dir", "--format", "tar.gz", "--out", out,
            "--json"]
    procs = [subprocess.Popen([sys.executable, "-m", "wvwasi", *map(str, args)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    reports = [json.loads(stdout) for stdout, _err in results]
    for report in reports:
        same_bytes(report, warm["rebuilt"], ("tar.gz",))
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        ["SHA256SUMS", "build-report.json", paths(reports[0])["dir"].name,
         paths(reports[0])["tar.gz"].name])
    assert not [p for p in (cache / "packages").iterdir() if p.name.startswith(".")]


def test_info_lists_and_clean_empties_every_cache(warm: dict[str, Any], tmp_path: Path):
    cache = tmp_path / "cache"
    shutil.copytree(warm["cache"], cache, symlinks=False,
                    ignore=shutil.ignore_patterns("runtime"))
    (cache / "runtime" / "x-linux").mkdir(parents=True)
    (cache / "runtime" / "x-linux" / "blob").write_bytes(b"\0" * 4000)
    user = tmp_path / "user"
    app_cache = user / "dev.example.app" / "modules"
    app_cache.mkdir(parents=True)
    (app_cache / "a.cwasm").write_bytes(b"\0" * 3000)
    (app_cache / "a.cwasm.json").write_text("{}")
    env = cli_env(WVWASI_CACHE_DIR=str(cache), XDG_CACHE_HOME=str(user))

    info = json.loads(wvwasi("info", "--json", env=env).stdout)["cache"]
    kinds = {c["kind"]: c for c in info["caches"]}
    assert set(kinds) == {"runtime", "compiled", "packages", "app-compiled"}
    assert kinds["runtime"]["bytes"] == 4000 and kinds["app-compiled"]["bytes"] == 3002
    assert kinds["compiled"]["bytes"] > 0 and kinds["packages"]["bytes"] > 0
    assert info["bytes"] == sum(c["bytes"] for c in info["caches"])
    text = wvwasi("info", env=env).stdout
    assert str(app_cache) in text and "packages" in text

    proc = wvwasi("clean", "--compiled", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not (cache / "modules").exists() and not app_cache.exists()
    assert not (cache / "modules-digests").exists()  # the entries' digests go with them
    assert (cache / "runtime" / "x-linux" / "blob").exists() and (cache / "packages").exists()
    proc = wvwasi("clean", env=env)
    assert proc.returncode == 0 and "freed" in proc.stdout
    remaining = json.loads(wvwasi("info", "--json", env=env).stdout)["cache"]
    assert remaining["caches"] == [] and remaining["bytes"] == 0

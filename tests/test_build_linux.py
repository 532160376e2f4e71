"""`wvwasi build` on Linux, end to end: a `wvwasi new` project built into every Linux format with
the real frozen runtime; the outputs run (`--self-test` under Xvfb), install (dpkg) and rebuild
reproducibly."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from build_helpers import SDE, cli_env, files_under, module_id, new_project, self_test, wvwasi
from xvfb import xvfb

from wvwasi.runtime.manifest import load_manifest

FORMATS = ("dir", "onefile", "tar.gz", "deb", "rpm")
SLUG = "wvwasi-build-test"
EXTRA_TOML = """
[bundle]
resources = ["data"]

[bundle.linux]
depends = ["libc6"]
category = "Development"
"""


@pytest.fixture(scope="module")
def display() -> Any:
    with xvfb() as name:
        yield name


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = new_project(tmp_path_factory.mktemp("linux"), "wvwasi Build Test", EXTRA_TOML,
                          identifier="dev.wvwasi.tests.buildtest")
    (project / "data").mkdir()
    (project / "data" / "readme.txt").write_text("shipped\n")
    return project


def _format_args(formats: tuple[str, ...]) -> list[str]:
    return [arg for f in formats for arg in ("--format", f)]


@pytest.fixture(scope="module")
def report(project: Path) -> dict[str, Any]:
    """The JSON report of one build of every Linux format (SOURCE_DATE_EPOCH set)."""
    proc = wvwasi("build", project, *_format_args(FORMATS), "--json",
                  env=cli_env(SOURCE_DATE_EPOCH=SDE))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def artefact(report: dict[str, Any], fmt: str) -> Path:
    (path,) = [Path(a["path"]) for a in report["artefacts"] if a["format"] == fmt]
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_report_lists_every_artefact_with_checksums(report: dict[str, Any], project: Path):
    dist = project / "dist"
    assert [a["format"] for a in report["artefacts"]] == list(FORMATS)
    assert json.loads((dist / "build-report.json").read_text()) == report
    sums = dict(line.split("  ")[::-1] for line in (dist / "SHA256SUMS").read_text().splitlines())
    for a in report["artefacts"]:
        path = Path(a["path"])
        assert path.parent == dist and path.exists()
        if path.is_dir():
            assert a["sha256"] is None and path.name not in sums
        else:
            assert a["size"] == path.stat().st_size
            assert sums[path.name] == a["sha256"] == _sha256(path)
    steps = [s["step"] for s in report["steps"]]
    assert steps[:2] == ["manifest", "formats"]  # then the service's build, if it is stale
    assert "precompile" in steps
    assert [s for s in steps if s.startswith("format ")] == [f"format {f}" for f in FORMATS]
    assert not [p for p in dist.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_payload_is_staged_beside_the_executable(report: dict[str, Any]):
    folder = artefact(report, "dir")
    payload = folder / "app"
    assert (folder / SLUG).is_file() and (folder / "_internal").is_dir()
    greet = module_id(payload, "greet")
    for rel in ("ui/index.html", "ui/app.js", f"services/{greet}.wasm.gz",
                f"precompiled/{greet}.cwasm", "icon.png", "resources/data/readme.txt"):
        assert (payload / rel).is_file(), rel
    assert not (payload / "services" / f"{greet}.wasm").exists()  # only the artefact unpacked
    manifest = load_manifest(payload, platform="linux")
    assert manifest.services["greet"].source == payload / "services" / f"{greet}.wasm"
    assert manifest.services["greet"].build is None
    assert manifest.app.identifier == "dev.wvwasi.tests.buildtest"


def test_frozen_runtime_leaves_out_the_build_tool_and_system_gtk(report: dict[str, Any]):
    files = files_under(artefact(report, "dir") / "_internal")
    for needle in ("PyInstaller", "tkinter", "PIL/", "packager", "PyQt6", "libgtk-3",
                   "libwebkit2gtk", "libglib-2.0", "gi_typelibs"):
        assert not [f for f in files if needle in f], needle
    assert any("_libwasmtime" in f for f in files)


def test_dir_and_onefile_pass_the_self_test(report: dict[str, Any], display: str):
    for executable in (artefact(report, "dir") / SLUG, artefact(report, "onefile")):
        status, result = self_test(executable, display)
        assert status == 0 and result["ok"], (executable, result)
        assert result["app_checks"]["greet"] == {"ok": True, "detail": "Hello, wvwasi!"}


def test_targz_unpacks_and_runs(report: dict[str, Any], display: str, tmp_path: Path):
    archive = artefact(report, "tar.gz")
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        assert {(m.uid, m.gid, m.uname, m.mtime) for m in members} == {(0, 0, "root", int(SDE))}
        tar.extractall(tmp_path, filter="tar")
    top = tmp_path / archive.name.removesuffix(".tar.gz")
    assert files_under(top) == files_under(artefact(report, "dir"))
    status, result = self_test(top / SLUG, display)
    assert status == 0 and result["ok"], result


def _deb_entries(deb: Path) -> tuple[set[str], set[str]]:
    """(files and symlinks, folders) listed by dpkg-deb -c, as absolute paths."""
    files, dirs = set(), set()
    for line in subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        mode, path = line.split()[0], line.split(maxsplit=5)[5].split(" -> ")[0]
        path = "/" + path.removeprefix("./").rstrip("/")
        (dirs if mode.startswith("d") else files).add(path)
    return files, dirs


def test_deb_depends_installs_runs_and_removes_cleanly(report: dict[str, Any], display: str):
    deb = artefact(report, "deb")
    depends = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True,
                             check=True).stdout
    assert [d.strip() for d in depends.split(",")] == [
        "gir1.2-webkit2-4.1", "gir1.2-gtk-3.0", "libgirepository-1.0-1",
        "gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good", "libc6"]
    recommends = subprocess.run(["dpkg-deb", "-f", deb, "Recommends"], capture_output=True,
                                text=True, check=True).stdout
    assert [d.strip() for d in recommends.split(",")] == [
        "gstreamer1.0-plugins-bad", "gstreamer1.0-libav", "gstreamer1.0-gl"]
    files, _dirs = _deb_entries(deb)
    assert f"/usr/bin/{SLUG}" in files
    assert "/usr/share/applications/dev.wvwasi.tests.buildtest.desktop" in files
    assert "/usr/share/icons/hicolor/256x256/apps/dev.wvwasi.tests.buildtest.png" in files
    subprocess.run(["dpkg", "-i", deb], check=True, capture_output=True)
    try:
        desktop = Path("/usr/share/applications/dev.wvwasi.tests.buildtest.desktop").read_text()
        assert f"Exec=/usr/bin/{SLUG}\n" in desktop and "Categories=Development;" in desktop
        status, result = self_test(f"/usr/bin/{SLUG}", display)
        assert status == 0 and result["ok"], result
    finally:
        subprocess.run(["dpkg", "-r", SLUG], check=True, capture_output=True)
    left = [f for f in files if Path(f).exists() or Path(f).is_symlink()]
    assert left == [] and not Path(f"/opt/{SLUG}").exists()


def test_rpm_installs_the_same_files_as_the_deb(report: dict[str, Any]):
    rpm = artefact(report, "rpm")
    listing = subprocess.run(
        ["rpm", "-qp", "--queryformat", "[%{FILEMODES:perms} %{FILENAMES}\n]", rpm],
        capture_output=True, text=True, check=True).stdout.splitlines()
    rpm_files = {line.split(" ", 1)[1] for line in listing if not line.startswith("d")}
    deb_files, _ = _deb_entries(artefact(report, "deb"))
    assert rpm_files == deb_files
    requires = subprocess.run(["rpm", "-qp", "--requires", rpm], capture_output=True, text=True,
                              check=True).stdout.split()
    assert {"webkit2gtk4.1", "gtk3", "gstreamer1-plugins-base",
            "gstreamer1-plugins-good"} <= set(requires)
    recommends = subprocess.run(["rpm", "-qp", "--recommends", rpm], capture_output=True,
                                text=True, check=True).stdout.split()
    assert recommends == ["gstreamer1-plugins-bad-free", "gstreamer1-plugin-libav"]


def _build_json(project: Path, formats: tuple[str, ...], out: Path, **env: str) -> dict:
    proc = wvwasi("build", project, *_format_args(formats), "--out", out, "--json",
                  env=cli_env(**env))
    assert proc.returncode == 0, proc.stderr
    return {**json.loads(proc.stdout), "stderr": proc.stderr}


def test_same_source_date_epoch_gives_identical_packages(
    report: dict[str, Any], project: Path, tmp_path: Path
):
    again = ("tar.gz", "deb", "rpm")
    first, second = report, _build_json(project, again, tmp_path / "2", SOURCE_DATE_EPOCH=SDE)
    if second["runtime"] != first["runtime"]:  # runtime sources edited meanwhile (development)
        first = _build_json(project, again, tmp_path / "1", SOURCE_DATE_EPOCH=SDE)
    assert first["runtime"] == second["runtime"]
    for fmt in again:
        one, other = artefact(first, fmt), artefact(second, fmt)
        assert one.name == other.name
        assert one.read_bytes() == other.read_bytes(), fmt


def test_rebuild_after_a_ui_edit_reuses_the_frozen_runtime(project: Path, tmp_path: Path,
                                                           report: dict[str, Any]):
    index = project / "ui" / "index.html"
    index.write_text(index.read_text().replace("<main>", "<main data-edited>"))
    rebuilt = _build_json(project, ("dir",), tmp_path / "1")
    if rebuilt["runtime"] != report["runtime"]:  # runtime sources edited meanwhile: froze anew
        rebuilt = _build_json(project, ("dir",), tmp_path / "2")
    assert "freezing" not in rebuilt["stderr"]
    staged = artefact(rebuilt, "dir") / "app" / "ui" / "index.html"
    assert "<main data-edited>" in staged.read_text()

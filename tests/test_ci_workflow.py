"""The release workflow `wvwasi ci github` writes for a fresh `wvwasi new` project, executed:
its Linux jobs' `run:` steps run verbatim (tests/gha.py emulates the runner and the actions
exactly as documented), from the services job through the Linux package job (install the
vendored wvwasi wheel into a fresh environment, build, headless self-test of the built app) and
the MSI job (from a Windows runtime: the mingw-w64 stub standing in for the Windows job's
artifact), down to the release job's file selection and its one SHA256SUMS."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from build_helpers import CACHE, new_project
from gha import Runner, _search_paths
from test_new import actionlint
from wine import build_stub

from wvwasi import __version__
from wvwasi.packager.signing import generate
from wvwasi.runtime.update.minisign import parse_signature, verify_file


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh `wvwasi new` project, committed (what a user pushes)."""
    project = new_project(tmp_path_factory.mktemp("cirepo"), "Ci App")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "new app"], cwd=project, check=True)
    return project


@pytest.fixture(scope="module")
def python_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What setup-python provides: a fresh environment without wvwasi. Its dependencies are
    linked from this test environment (no network here); wvwasi itself is what the workflow
    installs."""
    venv = tmp_path_factory.mktemp("setup-python") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    ours = Path(sysconfig.get_paths()["purelib"])
    theirs = next((venv / "lib").glob("python3*/site-packages"))
    for entry in ours.iterdir():
        if entry.name.lower().startswith(("wvwasi", "__editable__", "_wvwasi")):
            continue
        if not (theirs / entry.name).exists():
            (theirs / entry.name).symlink_to(entry)
    return venv / "bin"


@pytest.fixture(scope="module")
def workflow(repo: Path) -> dict:
    return yaml.safe_load((repo / ".github" / "workflows" / "release.yml").read_text())


def test_artifact_paths_round_trip(workflow: dict):
    steps = workflow["jobs"]["services"]["steps"]
    (upload,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    paths = upload["with"]["path"].split()
    assert paths[0] == "wvwasi.toml" and "build/greet.wasm" in paths
    assert str(_search_paths(paths)[0]) == "wvwasi.toml"  # LCA: the project folder


def test_the_workflow_runs_on_linux_down_to_the_release(
    workflow: dict, repo: Path, python_bin: Path, tmp_path: Path
):
    env = {"HOME": str(tmp_path / "home"), "WVWASI_CACHE_DIR": str(CACHE), "LANG": "C.UTF-8"}
    runner = Runner(tmp_path, repo, python_bin, env)
    install = workflow["env"]
    assert install["WVWASI_PACKAGE"] == f"./.github/wvwasi/wvwasi-{__version__}-py3-none-any.whl"
    assert (repo / install["WVWASI_PACKAGE"]).is_file() and install["WVWASI_PIN"] == ""

    runner.run_job(workflow, "services")
    assert (runner.artifacts / "services" / "build" / "greet.wasm").is_file()  # round-trips

    (linux,) = [m for m in workflow["jobs"]["package"]["strategy"]["matrix"]["include"]
                if m["os"].startswith("ubuntu")]
    key_text, key = generate("pw")  # the update-signing secret holds the key itself
    secrets = {"WVWASI_SIGNING_PRIVATE_KEY": key_text, "WVWASI_SIGNING_PRIVATE_KEY_PASSWORD": "pw"}
    ws = runner.run_job(workflow, "package", matrix=linux, secrets=secrets)
    assert (ws / "build" / "greet.wasm").is_file()
    packages = sorted(p.name for p in (runner.artifacts / f"packages-{linux['os']}").iterdir())
    linux_files = ["ci-app-0.1.0-linux-x86_64.tar.gz", "ci-app_0.1.0_amd64.deb",
                   "ci-app-0.1.0-1.x86_64.rpm"]
    assert packages == sorted(["SHA256SUMS", "build-report.json", "latest.json", *linux_files,
                               *(f + ".sig" for f in linux_files)])
    installed = subprocess.run([python_bin / "python", "-c", "import wvwasi; print(wvwasi."
                                "__file__)"], capture_output=True, text=True, check=True,
                               cwd=tmp_path).stdout
    assert "setup-python" in installed  # the wheel's wvwasi, not this checkout's

    # the Windows job's runtime artifact (its frozen onedir): a mingw-w64 stub stands in
    runtime = runner.artifacts / "windows-runtime"
    build_stub(runtime / "wvwasi-runtime.exe")
    (runtime / "_internal").mkdir()
    (runtime / "_internal" / "python311.dll").write_bytes(b"MZ stand-in")
    runner.run_job(workflow, "msi", secrets=secrets)
    msi = "ci-app-0.1.0-windows-x64.msi"
    assert sorted(p.name for p in (runner.artifacts / "packages-msi").iterdir()) == [
        msi, msi + ".sig", "latest.json"]

    runner.run_job(workflow, "release")
    released = sorted(p.name for p in runner.released.iterdir())
    assert released == sorted([*(p for p in packages if p not in ("SHA256SUMS",
                                                                   "build-report.json")),
                               msi, msi + ".sig", "SHA256SUMS"])
    # one latest.json for both jobs' builds, each signature the .sig beside its file
    latest = json.loads((runner.released / "latest.json").read_text())
    assert sorted(latest["platforms"]) == [
        "linux-x86_64", "linux-x86_64-deb", "linux-x86_64-rpm", "linux-x86_64-targz",
        "windows-x86_64", "windows-x86_64-msi"]
    for entry in latest["platforms"].values():
        sig = base64.b64decode(entry["signature"]).decode()
        assert sig == (runner.released / (entry["url"] + ".sig")).read_text()
        verify_file(runner.released / entry["url"], parse_signature(sig), key.public_key)
    sums = dict(reversed(line.split("  ")) for line in
                (runner.released / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == set(released) - {"SHA256SUMS", "latest.json"}
    for name, digest in sums.items():
        assert hashlib.sha256((runner.released / name).read_bytes()).hexdigest() == digest
    log = runner.gh_log.read_text().splitlines()
    assert log[0].startswith("release view v0.1.0") and log[1].startswith("release create")
    assert log[2].startswith("release upload v0.1.0 release/")


def test_the_release_needs_every_job_and_a_tag(workflow: dict):
    release = workflow["jobs"]["release"]
    assert set(release["needs"]) == {"package", "msi"}
    assert release["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert workflow["jobs"]["package"]["strategy"]["fail-fast"] is False
    assert workflow["permissions"] == {"contents": "read"}
    assert release["permissions"] == {"contents": "write"}


def test_signing_secrets_are_checked_first_when_the_manifest_signs(tmp_path: Path):
    project = new_project(tmp_path, "Signed Ci", '[bundle.windows]\nsign = true\n'
                          '[bundle.macos]\nsigning_identity = "Developer ID Application: X"\n'
                          "notarize = true\n")
    subprocess.run([sys.executable, "-m", "wvwasi", "ci", "github", project], check=True,
                   capture_output=True)
    text = (project / ".github" / "workflows" / "release.yml").read_text()
    first = yaml.safe_load(text)["jobs"]["services"]["steps"][0]
    assert first["name"] == "Check the signing secrets wvwasi.toml asks for"
    names = ["WVWASI_WINDOWS_CERT_BASE64", "WVWASI_WINDOWS_CERT_PASSWORD",
             "WVWASI_MACOS_CERT_BASE64", "WVWASI_MACOS_CERT_PASSWORD", "WVWASI_APPLE_ID",
             "WVWASI_APPLE_PASSWORD", "WVWASI_APPLE_TEAM_ID"]
    assert list(first["env"]) == names
    script = tmp_path / "check.sh"
    script.write_text(first["run"])
    env = {"PATH": "/usr/bin:/bin", **{n: "x" for n in names if n != "WVWASI_APPLE_TEAM_ID"}}
    proc = subprocess.run(["bash", "-e", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stdout.strip() == ("::error::missing repository secrets: WVWASI_APPLE_TEAM_ID "
                                   "(wvwasi.toml asks to sign)")
    env["WVWASI_APPLE_TEAM_ID"] = "T"
    assert subprocess.run(["bash", "-e", script], env=env).returncode == 0
    lint = actionlint(project / ".github" / "workflows" / "release.yml")
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_a_published_wvwasi_version_is_installed_from_pypi(tmp_path: Path):
    project = new_project(tmp_path, "Pinned", '[bundle]\nwvwasi = "0.3.1"\n')
    shutil.rmtree(project / ".github")
    subprocess.run([sys.executable, "-m", "wvwasi", "ci", "github", project], check=True,
                   capture_output=True)
    workflow = yaml.safe_load((project / ".github" / "workflows" / "release.yml").read_text())
    assert workflow["env"]["WVWASI_PACKAGE"] == "wvwasi"
    assert workflow["env"]["WVWASI_PIN"] == "==0.3.1"
    assert not (project / ".github" / "wvwasi").exists()  # nothing vendored

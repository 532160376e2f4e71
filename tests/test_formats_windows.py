"""Windows formats built on Linux: zip, NSIS setup.exe (makensis) and MSI (wixl), from an app
staged on a Windows runtime layout. PyInstaller cannot cross-build, so the runtime here is the
one allowed fake: a placeholder `wvwasi-runtime.exe` in a Windows onedir layout. The installers
themselves are real, compiled and inspected (msiinfo, the NSIS script and makensis' file log),
and Authenticode-signed with osslsigncode."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from build_helpers import cli_env, error_line, files_under, new_project, wvwasi
from winsign import make_certificate, signing_env, verified_signer

from wvwasi.packager.formats import FormatOptions, host_arch
from wvwasi.packager.formats import msi as msi_format
from wvwasi.packager.formats import nsis as nsis_format
from wvwasi.packager.stage import stage_app
from wvwasi.runtime.manifest import load_manifest
from wvwasi.runtime.update.install import MSI_MARKER

IDENTIFIER = "dev.wvwasi.tests.windows"
SLUG = "win-app"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Windows runtime layout (onedir/) with a placeholder executable and runtime files.

    The placeholder is a real (empty) Windows program made with makensis, so that it can be
    Authenticode-signed like the real runtime executable."""
    top = tmp_path_factory.mktemp("winruntime")
    onedir = top / "onedir"
    (onedir / "_internal" / "wasmtime").mkdir(parents=True)
    script = top / "placeholder.nsi"
    script.write_text(f'OutFile "{onedir / "wvwasi-runtime.exe"}"\nSection\nSectionEnd\n')
    subprocess.run(["makensis", "-V1", script], check=True, capture_output=True)
    (onedir / "_internal" / "python311.dll").write_bytes(b"MZ placeholder dll")
    (onedir / "_internal" / "wasmtime" / "_libwasmtime.dll").write_bytes(b"MZ placeholder")
    return top


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_project(tmp_path_factory.mktemp("winproj"), "Win App", identifier=IDENTIFIER)


def build(project: Path, runtime: Path, out: Path, *formats: str, **env: str) -> dict[str, Any]:
    args = [a for f in formats for a in ("--format", f)]
    proc = wvwasi("build", project, "--platform", "windows", "--runtime", runtime, "--out", out,
                  "--json", *args, env=cli_env(**env))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def paths(report: dict[str, Any]) -> dict[str, Path]:
    return {a["format"]: Path(a["path"]) for a in report["artefacts"]}


@pytest.fixture(scope="module")
def built(project: Path, runtime: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return paths(build(project, runtime, tmp_path_factory.mktemp("winout"), "zip", "nsis", "msi"))


def msi_table(msi: Path, table: str) -> list[list[str]]:
    """Rows of an MSI table (msiinfo export; the first three lines are the header)."""
    text = subprocess.run(["msiinfo", "export", msi, table], capture_output=True, text=True,
                          check=True).stdout
    return [line.split("\t") for line in text.splitlines()[3:]]


def test_zip_holds_the_windows_app_folder(built: dict[str, Path]):
    archive = built["zip"]
    assert archive.name == f"{SLUG}-0.1.0-windows-x64.zip"
    with zipfile.ZipFile(archive) as z:
        names = {n for n in z.namelist() if not n.endswith("/")}
    top = f"{SLUG}-0.1.0-windows-x64/"
    assert {f"{top}{SLUG}.exe", f"{top}_internal/python311.dll", f"{top}app/wvwasi.toml",
            f"{top}app/icon.ico", f"{top}app/ui/app.js"} <= names
    [module] = [n for n in names if n.startswith(f"{top}app/services/")]
    assert re.fullmatch(r".*/app/services/[0-9a-f]{16}\.wasm", module), module  # by content
    assert not any("precompiled" in n for n in names)  # artefacts are per-OS: compiled on 1st run


def test_msi_installs_every_file_per_user_with_a_stable_upgrade_code(
    built: dict[str, Path], project: Path, runtime: Path, tmp_path: Path
):
    msi = built["msi"]
    props = dict(row[:2] for row in msi_table(msi, "Property"))
    expected = str(uuid.uuid5(msi_format.NAMESPACE, IDENTIFIER)).upper()
    assert props["UpgradeCode"] == "{" + expected + "}" or props["UpgradeCode"] == expected
    assert props["ProductVersion"] == "0.1.0" and props["ProductName"] == "Win App"
    assert props["MSIINSTALLPERUSER"] == "1"
    installed = {row[2].split("|")[-1] for row in msi_table(msi, "File")}
    modules = {n for n in installed if re.fullmatch(r"[0-9a-f]{16}\.wasm", n)}  # by content
    assert len(modules) == 1
    assert installed - modules == {"win-app.exe", "python311.dll", "_libwasmtime.dll",
                                   "wvwasi.toml", "payload.json", "icon.png", "icon.ico",
                                   "index.html", "app.js", "style.css", MSI_MARKER}
    (shortcut,) = msi_table(msi, "Shortcut")
    assert "Win App" in shortcut[2] and f"[INSTALLDIR]{SLUG}.exe" in shortcut
    assert msi_table(msi, "Upgrade")  # MajorUpgrade: newer versions replace this one

    toml = project / "wvwasi.toml"
    toml.write_text(toml.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    try:
        newer = paths(build(project, runtime, tmp_path, "msi"))["msi"]
    finally:
        toml.write_text(toml.read_text().replace('version = "0.2.0"', 'version = "0.1.0"'))
    newer_props = dict(row[:2] for row in msi_table(newer, "Property"))
    assert newer_props["UpgradeCode"] == props["UpgradeCode"]
    assert newer_props["ProductCode"] != props["ProductCode"]
    assert newer_props["ProductVersion"] == "0.2.0"


def test_nsis_script_installs_and_uninstalls_every_staged_file(
    project: Path, runtime: Path, tmp_path: Path
):
    manifest = load_manifest(project, platform="windows")
    app = stage_app(manifest, runtime / "onedir", "wvwasi-runtime.exe", tmp_path / "stage",
                    arch=host_arch())
    staged = files_under(app.root)
    work = tmp_path / "work"
    (out := tmp_path / "out").mkdir()
    (setup,) = nsis_format.build(app, out, FormatOptions(work=work))
    assert setup.read_bytes()[:2] == b"MZ" and setup.stat().st_size > 50_000
    script = (work / "installer.nsi").read_text()
    windows = {p.replace("/", "\\") for p in staged}
    files = {line.split('"')[1] for line in script.splitlines()
             if line.strip().startswith("File ")}
    assert {str(Path(f).relative_to(app.root)).replace("/", "\\") for f in files} == windows
    deleted = {line.split('"')[1].removeprefix("$INSTDIR\\") for line in script.splitlines()
               if line.strip().startswith('Delete "$INSTDIR\\')} - {"uninstall.exe"}
    assert deleted == windows
    assert "RequestExecutionLevel user" in script and "$LOCALAPPDATA\\Programs\\win-app" in script
    assert '"$INSTDIR\\uninstall.exe" /S _?=$INSTDIR' in script  # upgrade in place
    assert 'CreateShortCut "$SMPROGRAMS\\${APP_NAME}.lnk"' in script
    log = (work / "makensis.log").read_text().splitlines()
    assert f'OutFile: "{setup}"' in log
    compiled = sorted(line.split('"')[1] for line in log if line.startswith("File: "))
    # + NSIS's nsExec plugin: the default WebView2 mode downloads the bootstrapper with it
    assert compiled == sorted([*(Path(p).name for p in staged), "nsExec.dll"])
    assert "SetCompressor: /SOLID lzma" in log  # the default: the smallest setup


@pytest.mark.parametrize(("compression", "said"), [
    ("zlib", "SetCompressor: /SOLID zlib"), ("none", "SetCompress: off")])
def test_nsis_compression_comes_from_the_manifest(
    project: Path, runtime: Path, tmp_path: Path, compression: str, said: str
):
    manifest = load_manifest(project, platform="windows")
    windows = replace(manifest.bundle.windows, nsis_compression=compression)
    manifest = replace(manifest, bundle=replace(manifest.bundle, windows=windows))
    app = stage_app(manifest, runtime / "onedir", "wvwasi-runtime.exe", tmp_path / "stage",
                    arch=host_arch())
    (out := tmp_path / "out").mkdir()
    (setup,) = nsis_format.build(app, out, FormatOptions(work=tmp_path / "work"))
    assert setup.read_bytes()[:2] == b"MZ"
    assert said in (tmp_path / "work" / "makensis.log").read_text().splitlines()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certificate(tmp_path_factory.mktemp("cert"))


def test_signing_signs_the_executable_and_both_installers(
    tmp_path_factory: pytest.TempPathFactory, runtime: Path, certificate: Path, tmp_path: Path
):
    project = new_project(tmp_path_factory.mktemp("signed"), "Signed App",
                          "[bundle.windows]\nsign = true\n")
    built = paths(build(project, runtime, tmp_path / "out", "zip", "nsis", "msi",
                        **signing_env(certificate)))
    with zipfile.ZipFile(built["zip"]) as z:
        (exe_name,) = [n for n in z.namelist() if n.endswith("/signed-app.exe")]
        (tmp_path / "app.exe").write_bytes(z.read(exe_name))
    for file in (tmp_path / "app.exe", built["nsis"], built["msi"]):
        assert verified_signer(file, certificate), file

    proc = wvwasi("build", project, "--platform", "windows", "--runtime", runtime, "--format",
                  "zip", "--out", tmp_path / "unsigned", env=cli_env())
    assert proc.returncode == 1
    assert error_line(proc) == (
        "error: sign: WVWASI_WINDOWS_CERT is not set (needed because the manifest asks to sign)")
    assert not (tmp_path / "unsigned").exists()


@pytest.mark.parametrize(("extra", "env", "expected"), [
    ('[bundle.windows]\nwebview2 = "bundle"\n', {},
     'wvwasi.toml: bundle.windows.webview2: expected "download-bootstrapper", '
     '"embed-bootstrapper", "offline-installer" or "skip", got "bundle"'),
    ('[bundle.windows]\nwebview2 = "embed-bootstrapper"\n',
     {"WVWASI_WEBVIEW2_BOOTSTRAPPER": "/nonexistent/MicrosoftEdgeWebview2Setup.exe"},
     "error: webview2: WVWASI_WEBVIEW2_BOOTSTRAPPER: "
     "/nonexistent/MicrosoftEdgeWebview2Setup.exe does not exist"),
])
def test_bad_webview2_settings_are_one_line_errors_naming_the_key(
    runtime: Path, tmp_path: Path, extra: str, env: dict[str, str], expected: str
):
    project = new_project(tmp_path, "Bad WebView2")
    with open(project / "wvwasi.toml", "a", encoding="utf-8") as f:
        f.write("\n" + extra)
    out = tmp_path / "out"
    proc = wvwasi("build", project, "--platform", "windows", "--runtime", runtime, "--format",
                  "nsis", "--out", out, env=cli_env(**env))
    assert expected in error_line(proc)
    assert not out.exists()


def test_a_windows_runtime_without_its_exe_is_refused(tmp_path: Path, project: Path):
    (tmp_path / "rt" / "onedir" / "_internal").mkdir(parents=True)
    (tmp_path / "rt" / "onedir" / "wvwasi-runtime").write_bytes(b"\x7fELF not for Windows")
    out = tmp_path / "out"
    proc = wvwasi("build", project, "--platform", "windows", "--runtime", tmp_path / "rt",
                  "--format", "zip", "--out", out)
    assert error_line(proc) == (f"error: freeze: --runtime {tmp_path / 'rt'}: expected "
                                "onedir/wvwasi-runtime.exe in it")
    assert not out.exists()

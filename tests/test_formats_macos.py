"""macOS formats on Linux. PyInstaller cannot cross-build, so the runtime is a folder laid out
like PyInstaller's macOS onedir (placeholder Mach-O files: the one allowed fake); the `.app`
built from it is real and checked for PyInstaller's bundle layout (as its bootloader and codesign
expect), Info.plist, .icns and entitlements. codesign/notarytool/stapler/hdiutil exist only on
macOS: their calls are recorded at the one tool runner and checked for order and arguments."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from build_helpers import cli_env, error_line, new_project, wvwasi
from PIL import Image

from wvwasi.packager.build import BuildRequest, build
from wvwasi.packager.formats import FormatOptions, _sign, dmg
from wvwasi.runtime.manifest import load_manifest

MACHO = b"\xcf\xfa\xed\xfe placeholder Mach-O"
#: _internal/ of a PyInstaller 6 macOS onedir (a framework Python build): code-only, data-only
#: and mixed folders, dotted folder names, symlinks.
INTERNAL = {
    "Python.framework/Versions/3.11/Python": MACHO,
    "Python.framework/Versions/3.11/Resources/Info.plist": b"<plist/>",
    "base_library.zip": b"PK zip",
    "lib-dynload/_ssl.cpython-311-darwin.so": MACHO,
    "lib-dynload/_ctypes.cpython-311-darwin.so": MACHO,
    "wasmtime/darwin-aarch64/_libwasmtime.dylib": MACHO,
    "wasmtime/py.typed": b"",
    "PIL/.dylibs/libjpeg.62.dylib": MACHO,
    "aiohttp-3.9.5.dist-info/METADATA": b"Name: aiohttp",
    "frozenlist/_frozenlist.cpython-311-darwin.so": MACHO,
    "frozenlist/py.typed": b"",
    "wvwasi/runtime/js/wvwasi.js": b"// page API",
    "certifi/cacert.pem": b"-----BEGIN CERTIFICATE-----",
}
LINKS = {"Python": "Python.framework/Versions/3.11/Python",
         "Python.framework/Versions/Current": "3.11"}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("macruntime")
    internal = top / "onedir" / "_internal"
    for rel, data in INTERNAL.items():
        (internal / rel).parent.mkdir(parents=True, exist_ok=True)
        (internal / rel).write_bytes(data)
    for rel, target in LINKS.items():
        (internal / rel).symlink_to(target)
    exe = top / "onedir" / "wvwasi-runtime"
    exe.write_bytes(MACHO)
    exe.chmod(0o755)
    return top


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    extra = '[bundle.macos]\nminimum_system_version = "11.0"\n'
    project = new_project(tmp_path_factory.mktemp("macproj"), "Mac App", extra,
                          identifier="dev.wvwasi.tests.mac")
    toml = project / "wvwasi.toml"
    toml.write_text(toml.read_text().replace('version = "0.1.0"', 'version = "1.2.3-beta.1"'))
    return project


@pytest.fixture(scope="module")
def bundle(project: Path, runtime: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    proc = wvwasi("build", project, "--platform", "macos", "--runtime", runtime, "--format",
                  "app", "--out", tmp_path_factory.mktemp("macout"), "--json")
    assert proc.returncode == 0, proc.stderr
    (path,) = [Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]]
    return path


def test_app_bundle_has_pyinstallers_layout(bundle: Path):
    contents = bundle / "Contents"
    assert [p.name for p in (contents / "MacOS").iterdir()] == ["mac-app"]  # executable alone
    assert (contents / "MacOS" / "mac-app").read_bytes() == MACHO
    frameworks, resources = contents / "Frameworks", contents / "Resources"
    for rel, data in INTERNAL.items():
        # the bootloader's sys._MEIPASS is Contents/Frameworks: every file is found there under
        # its onedir path, and under Resources too (cross-links), with its content
        assert (frameworks / rel).read_bytes() == data, rel
        assert (resources / rel).read_bytes() == data, rel
        real = (frameworks / rel).resolve()
        code = data == MACHO or ".framework/" in rel  # a .framework bundle stays whole
        home = frameworks if code else resources  # code in Frameworks, data in Resources
        assert real.is_relative_to(home.resolve()), rel
    for rel, target in LINKS.items():
        assert (frameworks / rel).is_symlink() and str((frameworks / rel).readlink()) == target
    # codesign: no real folder with a dot under Frameworks but .framework bundles
    dotted = [p for p in frameworks.rglob("*") if p.is_dir() and not p.is_symlink()
              and "." in p.name and not p.name.endswith(".framework")
              and ".framework" not in p.relative_to(frameworks).parts[0]]
    assert dotted == []
    assert (frameworks / "PIL" / "__dot__dylibs").is_dir()
    assert str((frameworks / "PIL" / ".dylibs").readlink()) == "__dot__dylibs"
    # the payload is data in Resources, and loads
    assert not (frameworks / "app").exists()
    manifest = load_manifest(resources / "app", platform="macos")
    assert manifest.services["greet"].source.is_file()


def test_frozen_main_finds_the_payload_in_resources(bundle: Path):
    from wvwasi.runtime.frozen_main import find_payload
    assert find_payload(bundle / "Contents" / "MacOS" / "mac-app") == \
        bundle / "Contents" / "Resources" / "app"


def test_info_plist_and_icon(bundle: Path):
    with open(bundle / "Contents" / "Info.plist", "rb") as f:
        info = plistlib.load(f)
    assert info["CFBundleIdentifier"] == "dev.wvwasi.tests.mac"
    assert info["CFBundleVersion"] == "1.2.3-beta.1"
    assert info["CFBundleShortVersionString"] == "1.2.3"
    assert info["CFBundleExecutable"] == "mac-app"
    assert info["LSMinimumSystemVersion"] == "11.0"
    assert info["CFBundlePackageType"] == "APPL"
    with Image.open(bundle / "Contents" / "Resources" / info["CFBundleIconFile"]) as icon:
        assert icon.format == "ICNS" and icon.size[0] >= 512


APPLE = {"WVWASI_APPLE_ID": "dev@example.com", "WVWASI_APPLE_PASSWORD": "app-specific-pw",
         "WVWASI_APPLE_TEAM_ID": "TEAM123456"}
IDENTITY = "Developer ID Application: Example (TEAM123456)"


def test_signing_is_inside_out_with_entitlements_then_notarized_and_stapled(
    runtime: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
):
    project = new_project(tmp_path_factory.mktemp("signedmac"), "Signed Mac",
                          f'[bundle.macos]\nsigning_identity = "{IDENTITY}"\nnotarize = true\n')
    calls: list[list[str]] = []
    entitlements: list[dict] = []

    def record(argv, *, step, redact=(), **_):
        argv = [str(a) for a in argv]
        calls.append([step, *argv])
        if "--entitlements" in argv:
            with open(argv[argv.index("--entitlements") + 1], "rb") as f:
                entitlements.append(plistlib.load(f))
        return ""

    monkeypatch.setattr(_sign, "run", record)
    monkeypatch.setattr(_sign, "can_sign_macos", lambda: True)
    for name, value in APPLE.items():
        monkeypatch.setenv(name, value)
    out = tmp_path_factory.mktemp("signedout")
    report = build(BuildRequest(project, formats=("app",), out=out, platform="macos",
                                runtime=runtime))
    bundle = report.artefacts[0].path  # (calls name the build's temporary folder)
    codesign = [c for c in calls if c[1] == "codesign"]
    signed = [Path(c[-1]) for c in codesign]
    staged_bundle = signed[-1]
    assert staged_bundle.name == "Signed Mac.app"
    frameworks = staged_bundle / "Contents" / "Frameworks"
    nested = {p.relative_to(frameworks).as_posix() for p in signed[:-1]}
    assert nested == {
        "Python.framework", "lib-dynload/_ssl.cpython-311-darwin.so",
        "lib-dynload/_ctypes.cpython-311-darwin.so", "wasmtime/darwin-aarch64/_libwasmtime.dylib",
        "PIL/__dot__dylibs/libjpeg.62.dylib", "frozenlist/_frozenlist.cpython-311-darwin.so"}
    depth = [len(p.parts) for p in signed]
    assert depth == sorted(depth, reverse=True)  # innermost first, the bundle last
    for call in codesign:
        assert call[2:8] == ["--force", "--sign", IDENTITY, "--options", "runtime",
                             "--timestamp"]
        assert "--deep" not in call
    assert codesign[-1][8:] == ["--entitlements", codesign[-1][9], str(staged_bundle)]
    assert entitlements == [{"com.apple.security.cs.allow-jit": True}]
    assert [c[1] for c in calls[len(codesign):]] == ["ditto", "xcrun", "xcrun"]
    ditto, submit, staple = calls[len(codesign):]
    zipped = ditto[-1]
    assert ditto[1:5] == ["ditto", "-c", "-k", "--keepParent"] and ditto[5] == str(staged_bundle)
    assert submit[1:] == ["xcrun", "notarytool", "submit", zipped, "--apple-id",
                          "dev@example.com", "--password", "app-specific-pw", "--team-id",
                          "TEAM123456", "--wait"]
    assert staple[1:] == ["xcrun", "stapler", "staple", str(staged_bundle)]
    assert bundle.name == "Signed Mac.app" and (bundle / "Contents" / "Info.plist").is_file()


def test_dmg_holds_the_app_and_an_applications_link_signed_and_notarized(
    bundle: Path, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    calls: list[list[str]] = []
    monkeypatch.setattr(dmg, "run", lambda argv, **_: calls.append(list(map(str, argv))) or "")
    monkeypatch.setattr(_sign, "run", lambda argv, **_: calls.append(list(map(str, argv))) or "")
    monkeypatch.setattr(_sign, "can_sign_macos", lambda: True)
    for name, value in APPLE.items():
        monkeypatch.setenv(name, value)
    toml = project / "wvwasi.toml"
    text = toml.read_text()
    toml.write_text(text + f'signing_identity = "{IDENTITY}"\nnotarize = true\n')
    try:
        manifest = load_manifest(project, platform="macos")
    finally:
        toml.write_text(text)
    app = _staged(manifest, bundle)
    (out := tmp_path / "out").mkdir()
    (image,) = dmg.build(app, out, FormatOptions(work=tmp_path / "work",
                                                 built={"app": (bundle,)}))
    volume = tmp_path / "work" / "volume"
    assert sorted(p.name for p in volume.iterdir()) == ["Applications", "Mac App.app"]
    assert str((volume / "Applications").readlink()) == "/Applications"
    assert [c[:2] for c in calls] == [["hdiutil", "create"], ["codesign", "--force"],
                                      ["xcrun", "notarytool"], ["xcrun", "stapler"]]
    assert calls[0][calls[0].index("-srcfolder") + 1] == str(volume)
    assert calls[1] == ["codesign", "--force", "--sign", IDENTITY, "--timestamp", str(image)]
    assert calls[2][3] == str(image) and calls[3] == ["xcrun", "stapler", "staple", str(image)]


def _staged(manifest, bundle: Path):
    from wvwasi.packager.formats import host_arch
    from wvwasi.packager.stage import StagedApp
    macos = bundle / "Contents" / "MacOS"
    return StagedApp(manifest, "macos", host_arch(), macos, macos / "mac-app")


@pytest.mark.parametrize(("extra", "env", "expected"), [
    ("notarize = true\n", APPLE,
     "error: sign: [bundle.macos] notarize = true needs [bundle.macos] signing_identity "
     "(a Developer ID Application identity): Apple does not notarize ad-hoc signed apps"),
    (f'notarize = true\nsigning_identity = "{IDENTITY}"\n',
     {k: v for k, v in APPLE.items() if k != "WVWASI_APPLE_TEAM_ID"},
     "error: sign: WVWASI_APPLE_TEAM_ID is not set (needed because the manifest asks to sign)"),
])
def test_notarization_is_refused_before_anything_is_built(
    runtime: Path, tmp_path: Path, extra: str, env: dict[str, str], expected: str
):
    project = new_project(tmp_path, "Refused", "[bundle.macos]\n" + extra)
    out = tmp_path / "out"
    clean = {k: v for k, v in cli_env().items() if not k.startswith("WVWASI_APPLE")}
    proc = wvwasi("build", project, "--platform", "macos", "--runtime", runtime, "--format",
                  "app", "--out", out, env={**clean, **env})
    assert error_line(proc) == expected
    assert not out.exists()


def test_dmg_needs_macos(project: Path, runtime: Path, tmp_path: Path):
    out = tmp_path / "out"
    proc = wvwasi("build", project, "--platform", "macos", "--runtime", runtime, "--format",
                  "dmg", "--out", out, env=cli_env(PATH="/usr/bin:/bin"))
    assert error_line(proc).startswith("error: format dmg: 'hdiutil' not found on PATH: needs "
                                       "macOS (hdiutil")
    assert not out.exists()



#: The placeholder runtime's executable for the update test: Linux cannot run the macOS runtime,
#: so this answers what the installer asks (`--version` from the bundle's payload; the
#: self-test fails for version 1.0.2, the test's broken release).
UPDATE_EXE = """#!/bin/sh
app="$(dirname "$0")/../Resources/app/wvwasi.toml"
version=$(sed -n 's/^version = "\\(.*\\)"$/\\1/p' "$app" | head -n 1)
case "$1" in
  --version) echo "Mac Up $version" ;;
  --self-test=headless) [ "$version" != 1.0.2 ] ;;
esac
"""


@pytest.fixture(scope="module")
def app_updates(runtime: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`Mac Up` 1.0.0 and 1.0.1 (and a 1.0.2 whose self-test fails) built as `.app` with a
    signing key: {version: (bundle, latest.json)}, the key's folder."""
    top = tmp_path_factory.mktemp("macupdate")
    updating = top / "runtime"
    shutil.copytree(runtime, updating, symlinks=True)
    (updating / "onedir" / "wvwasi-runtime").write_text(UPDATE_EXE)
    made = wvwasi("signer", "generate", "-w", top / "key", "--password", "pw")
    assert made.returncode == 0, made.stderr
    update = ("[update]\nendpoints = [\"https://example.org/latest.json\"]\n"
              f'pubkey = """{(top / "key.pub").read_text().strip()}"""\n')
    project = new_project(top, "Mac Up", update, identifier="dev.wvwasi.tests.macup")
    toml = project / "wvwasi.toml"
    built = {}
    for version in ("1.0.0", "1.0.1", "1.0.2"):
        text = toml.read_text().replace('version = "0.1.0"', f'version = "{version}"', 1)
        toml.write_text(text)
        proc = wvwasi("build", project, "--platform", "macos", "--runtime", updating,
                      "--format", "app", "--out", top / version, "--json",
                      env=cli_env(WVWASI_SIGNING_PRIVATE_KEY=str(top / "key"),
                                  WVWASI_SIGNING_PRIVATE_KEY_PASSWORD="pw"))
        assert proc.returncode == 0, proc.stderr
        (bundle,) = [Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]]
        built[version] = (bundle, json.loads((top / version / "latest.json").read_text()))
        toml.write_text(text.replace(f'version = "{version}"', 'version = "0.1.0"', 1))
    return {"built": built, "top": top}


def test_app_tar_gz_is_signed_and_swapped_in_by_the_updater(app_updates: dict[str, Any],
                                                             tmp_path: Path):
    """The build writes `<Name>.app.tar.gz` + .sig and latest.json's darwin keys; the runtime's
    installer (runtime/update/install.py, as on macOS) unpacks it beside the installed bundle,
    runs the new one, swaps the bundles and removes the old; a new version that fails its
    self-test leaves the installed bundle as it was and nothing beside it."""
    from wvwasi.runtime.update import install
    from wvwasi.runtime.update.minisign import parse_public_key, parse_signature, verify_file

    key = parse_public_key((app_updates["top"] / "key.pub").read_text())
    bundle, latest = app_updates["built"]["1.0.1"]
    archive = bundle.with_name("mac-up-1.0.1-macos-x86_64.app.tar.gz")
    assert bundle.name == "Mac Up.app" and archive.is_file()
    assert set(latest["platforms"]) == {"darwin-x86_64", "darwin-x86_64-app"}
    entry = latest["platforms"]["darwin-x86_64-app"]
    assert entry["url"] == archive.name
    verify_file(archive, parse_signature(entry["signature"]), key)
    ok = subprocess.run(["minisign", "-V", "-p", app_updates["top"] / "key.pub", "-m", archive,
                         "-x", f"{archive}.sig"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr

    apps = tmp_path / "Applications"
    apps.mkdir()
    installed = apps / "Mac Up.app"
    shutil.copytree(app_updates["built"]["1.0.0"][0], installed, symlinks=True)
    exe = installed / "Contents" / "MacOS" / "mac-up"
    inst = install.Installation("app", installed, exe)
    before = sorted(str(p.relative_to(installed)) for p in installed.rglob("*"))

    failing = app_updates["built"]["1.0.2"][0].with_name("mac-up-1.0.2-macos-x86_64.app.tar.gz")
    for artefact, version in ((failing, "1.0.2"), (archive, "1.0.1")):
        with install.locked(inst):
            work = install.work_folder(inst)
            (work / "download").mkdir()
            copy = shutil.copy(artefact, work / "download" / artefact.name)
            try:
                if version == "1.0.2":
                    with pytest.raises(install.InstallError, match="self-test failed"):
                        install.install(inst, Path(copy), version, "dev.wvwasi.tests.macup")
                    after = sorted(str(p.relative_to(installed)) for p in installed.rglob("*"))
                    assert after == before
                    assert subprocess.run([exe, "--version"], capture_output=True,
                                          text=True).stdout.strip() == "Mac Up 1.0.0"
                else:
                    install.install(inst, Path(copy), version, "dev.wvwasi.tests.macup")
            finally:
                shutil.rmtree(work)
    assert os.listdir(apps) == ["Mac Up.app"]
    assert subprocess.run([exe, "--version"], capture_output=True,
                          text=True).stdout.strip() == "Mac Up 1.0.1"
    assert (installed / "Contents" / "Resources" / "app" / "wvwasi.toml").read_text() == (
        app_updates["built"]["1.0.1"][0] / "Contents" / "Resources" / "app" / "wvwasi.toml"
    ).read_text()

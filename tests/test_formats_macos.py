"""macOS formats on Linux: the `.app` bundle (Info.plist generated with plistlib, .icns icon, the
app folder in Contents/MacOS) from a placeholder macOS runtime (PyInstaller cannot cross-build);
`dmg` needs macOS's hdiutil and says so."""

from __future__ import annotations

import json
import plistlib
from pathlib import Path

import pytest
from build_helpers import cli_env, error_line, new_project, wvwasi
from PIL import Image

from wvwasi.runtime.manifest import load_manifest


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A macOS runtime layout with a placeholder executable (the one allowed fake)."""
    top = tmp_path_factory.mktemp("macruntime")
    (top / "onedir" / "_internal").mkdir(parents=True)
    exe = top / "onedir" / "wvwasi-runtime"
    exe.write_bytes(b"\xcf\xfa\xed\xfe placeholder Mach-O")
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


def test_app_bundle_has_info_plist_icon_and_the_app_folder(project: Path, runtime: Path,
                                                           tmp_path: Path):
    proc = wvwasi("build", project, "--platform", "macos", "--runtime", runtime, "--format",
                  "app", "--out", tmp_path, "--json")
    assert proc.returncode == 0, proc.stderr
    (bundle,) = [Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]]
    assert bundle.name == "Mac App.app"
    with open(bundle / "Contents" / "Info.plist", "rb") as f:
        info = plistlib.load(f)
    assert info["CFBundleIdentifier"] == "dev.wvwasi.tests.mac"
    assert info["CFBundleVersion"] == "1.2.3-beta.1"
    assert info["CFBundleShortVersionString"] == "1.2.3"
    assert info["CFBundleExecutable"] == "mac-app"
    assert info["LSMinimumSystemVersion"] == "11.0"
    macos = bundle / "Contents" / "MacOS"
    assert (macos / "mac-app").read_bytes().startswith(b"\xcf\xfa\xed\xfe")
    assert load_manifest(macos / "app", platform="macos").services["greet"].source.is_file()
    with Image.open(bundle / "Contents" / "Resources" / info["CFBundleIconFile"]) as icon:
        assert icon.format == "ICNS" and icon.size[0] >= 512


def test_dmg_needs_macos(project: Path, runtime: Path, tmp_path: Path):
    out = tmp_path / "out"
    proc = wvwasi("build", project, "--platform", "macos", "--runtime", runtime, "--format",
                  "dmg", "--out", out, env=cli_env(PATH="/usr/bin:/bin"))
    assert error_line(proc).startswith("error: format dmg: 'hdiutil' not found on PATH: needs "
                                       "macOS (hdiutil")
    assert not out.exists()

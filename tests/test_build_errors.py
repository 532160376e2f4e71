"""Bad input to `wvwasi build`: one `error:` line naming the step and why, exit status 1, and no
output folder or partial artefact left behind."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from build_helpers import cli_env, error_line, new_project, wvwasi
from PIL import Image


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return new_project(tmp_path, "Broken App")


def set_app_key(project: Path, line: str) -> None:
    toml = project / "wvwasi.toml"
    toml.write_text(toml.read_text().replace('version = "0.1.0"', f'version = "0.1.0"\n{line}'))


def build_fails(project: Path, *args: str | Path, env: dict[str, str] | None = None) -> str:
    proc = wvwasi("build", project, *args, env=env)
    assert proc.returncode == 1
    assert not (project / "dist").exists()
    return error_line(proc)


def test_missing_icon(project: Path):
    set_app_key(project, 'icon = "missing.png"')
    error = build_fails(project, "--format", "dir")
    assert error.startswith(f"error: manifest: {project / 'wvwasi.toml'}: app.icon: cannot read "
                            '"missing.png"')


def test_icon_that_is_not_a_png(project: Path):
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(jpeg, format="JPEG")
    (project / "icon.jpg").write_bytes(jpeg.getvalue())
    set_app_key(project, 'icon = "icon.jpg"')
    error = build_fails(project, "--format", "dir")
    assert error.endswith('app.icon: expected a PNG image, got "icon.jpg" which is not a PNG')


def test_a_relative_preopen_the_build_does_not_ship(make_project):
    """A relative preopen `host` is beneath $RESOURCES (docs/manifest.md): the built app would
    look for it in its shipped resources, so a folder no `bundle.resources` ships is refused."""
    project = make_project({"wc": {"source": "wc"}},
                           extra={"page": {"preopens": [{"guest": "/data", "host": "data"}]}})
    (project / "data").mkdir()
    error = build_fails(project, "--format", "dir")
    assert error == (f"error: manifest: {project / 'wvwasi.toml'}: page.preopens[0].host: "
                     '"data" is relative, which a built app opens in its shipped resources '
                     '($RESOURCES): add "data" (or a folder holding it) to bundle.resources, or '
                     "start it with a variable such as $APPDATA")


def test_failing_build_command(project: Path):
    toml = project / "wvwasi.toml"
    text = toml.read_text()
    start = text.index('build = { command = "') + len('build = { command = "')
    end = text.index('"', start)
    toml.write_text(text[:start] + "echo compiling >&2; exit 3" + text[end:])
    error = build_fails(project, "--format", "dir")
    assert error == ("error: build services.greet: `echo compiling >&2; exit 3` exited with "
                     "status 3: compiling")


def test_appimage_without_appimagetool(project: Path):
    error = build_fails(project, "--format", "appimage", env=cli_env(PATH="/usr/bin:/bin"))
    assert error == ("error: format appimage: 'appimagetool' not found on PATH: not packaged by "
                     "Debian: install it from the AppImage project and put it on PATH")


def test_unknown_format(project: Path):
    error = build_fails(project, "--format", "exe")
    assert error.startswith("error: formats: unknown format 'exe' (known: dir, onefile, tar.gz,")


def test_format_for_another_os(project: Path):
    error = build_fails(project, "--format", "nsis")
    assert error.startswith("error: formats: 'nsis' is a windows format, not for linux")


def test_another_os_without_a_runtime(project: Path):
    error = build_fails(project, "--platform", "macos", "--format", "app")
    assert error.startswith("error: platform: building for macos on linux needs --runtime")
    # Windows is cross-frozen here under Wine (test_windows_cross.py): it needs a Windows CPython
    error = build_fails(project, "--platform", "windows", "--format", "zip")
    assert error.startswith("error: freeze (windows): building for windows here needs a "
                            "Windows CPython: pass --windows-python PATH"), error


def test_unwritable_output_folder(project: Path, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    error = build_fails(project, "--format", "dir", "--out", blocker / "dist")
    assert error == f"error: output: cannot write to {blocker / 'dist'}: Not a directory"


def test_a_failing_format_leaves_no_partial_output(project: Path, tmp_path: Path):
    """`dir` is built, `appimage` fails (appimagetool exits 2): nothing reaches the output."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "appimagetool"
    fake.write_text("#!/bin/sh\necho 'appimagetool: error: disk on fire' >&2\nexit 2\n")
    fake.chmod(0o755)
    (project / "dist").mkdir()
    (project / "dist" / "keep.txt").write_text("from an earlier build")
    proc = wvwasi("build", project, "--format", "dir", "--format", "appimage",
                  env=cli_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"))
    assert error_line(proc) == ("error: appimage: appimagetool exited with status 2: "
                                "appimagetool: error: disk on fire")
    assert sorted(p.name for p in (project / "dist").iterdir()) == ["keep.txt"]

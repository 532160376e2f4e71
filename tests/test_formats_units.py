"""Pieces of the packager without a frozen runtime: icons, reproducible archives, the payload
appended to a single-file executable, format selection, the AppImage AppDir."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from build_helpers import files_under, new_project
from PIL import Image

from wvwasi.packager import icons, winres
from wvwasi.packager.build import select_formats
from wvwasi.packager.formats import appimage, host_arch
from wvwasi.packager.formats._archive import write_zip
from wvwasi.packager.formats._parts import compress, member, tar_parts, tree_entries, write_targz
from wvwasi.packager.formats.msi import msi_version, upgrade_code
from wvwasi.packager.formats.nsis import numeric_version, quote
from wvwasi.packager.formats.rpm import cpio_parts
from wvwasi.packager.stage import (
    append_payload,
    slugify,
    stage_app,
    stage_payload,
)
from wvwasi.packager.tools import BuildError
from wvwasi.runtime.frozen_main import find_payload
from wvwasi.runtime.host.modules import content_name
from wvwasi.runtime.manifest import AppInfo, load_manifest
from wvwasi.runtime.update.versions import package_version


def test_icon_sizes_from_one_png(tmp_path: Path):
    wide = tmp_path / "wide.png"
    Image.new("RGBA", (300, 200), (255, 0, 0, 255)).save(wide)
    image = icons.load_icon(wide)
    assert image.size == (icons.MASTER_SIZE, icons.MASTER_SIZE)
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((512, 512)) == (255, 0, 0, 255)
    with Image.open(icons.write_ico(image, tmp_path / "a.ico")) as ico:
        assert sorted(ico.info["sizes"]) == [(s, s) for s in icons.ICO_SIZES]
    with Image.open(icons.write_icns(image, tmp_path / "a.icns")) as icns:
        assert icns.format == "ICNS"
    written = icons.write_hicolor(image, tmp_path / "share", "dev.x.y")
    for size, path in zip(icons.HICOLOR_SIZES, written, strict=True):
        assert path == tmp_path / f"share/icons/hicolor/{size}x{size}/apps/dev.x.y.png"
        with Image.open(path) as im:
            assert im.size == (size, size)


def test_default_and_bad_icons(tmp_path: Path):
    assert icons.load_icon(None).size == (icons.MASTER_SIZE,) * 2
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(BuildError, match=r"^icon: .*x\.png: not a readable PNG image"):
        icons.load_icon(tmp_path / "x.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "x.gif", format="GIF")
    with pytest.raises(BuildError, match=r"x\.gif: expected a PNG image, got GIF"):
        icons.load_icon(tmp_path / "x.gif")


def _tree(top: Path, stamp: int) -> Path:
    (top / "sub").mkdir(parents=True)
    (top / "run").write_text("#!/bin/sh\n")
    (top / "run").chmod(0o700)
    (top / "sub" / "data.txt").write_text("hello")
    os.symlink("sub/data.txt", top / "link")
    for p in (top / "run", top / "sub" / "data.txt", top / "sub", top):
        os.utime(p, (stamp, stamp))
    return top


def test_archives_are_reproducible_with_a_fixed_epoch(tmp_path: Path):
    a, b = _tree(tmp_path / "a", 1_000_000), _tree(tmp_path / "b", 2_000_000)
    (tmp_path / "b" / "run").chmod(0o750)  # umask differences do not matter either
    for write, ext in ((write_targz, "tar.gz"), (write_zip, "zip")):
        first = write(a, tmp_path / f"a.{ext}", "app-1.0", 1_700_000_000)
        second = write(b, tmp_path / f"b.{ext}", "app-1.0", 1_700_000_000)
        assert first.read_bytes() == second.read_bytes(), ext
    with zipfile.ZipFile(tmp_path / "a.zip") as z:
        assert (z.getinfo("app-1.0/run").external_attr >> 16) & 0o777 == 0o755


def test_a_big_file_is_the_same_part_in_the_tar_and_the_cpio_stream(tmp_path: Path):
    """deb (tar) and rpm (cpio) share a big file's compressed part; both streams still
    decompress to archives real tools read back."""
    top = tmp_path / "app"
    (top / "sub").mkdir(parents=True)
    big = os.urandom(1 << 19) * 3  # 1.5 MiB: a part of its own
    (top / "sub" / "big.bin").write_bytes(big)
    (top / "small.txt").write_text("small")
    (top / "link").symlink_to("small.txt")
    entries = list(tree_entries(top, "./app"))
    tar, cpio = tar_parts(entries, 1_700_000_000), cpio_parts(
        sorted((member(e, 1_700_000_000) for e in entries), key=lambda m: m.name))
    assert [p for p in tar if p.data == big] == [p for p in cpio if p.data == big] != []
    for parts, args in ((tar, ["tar", "-xf", "-"]), (cpio, ["cpio", "-idm", "--quiet"])):
        out = tmp_path / args[0]
        out.mkdir()
        stream = subprocess.run(["xz", "-dc"], input=compress(parts, "xz"), check=True,
                                capture_output=True).stdout
        subprocess.run(args, input=stream, cwd=out, check=True)
        assert (out / "app" / "sub" / "big.bin").read_bytes() == big
        assert os.readlink(out / "app" / "link") == "small.txt"
        assert (out / "app" / "small.txt").stat().st_mtime == 1_700_000_000


def test_payload_appended_to_an_executable_is_extracted_once_and_reused(tmp_path: Path,
                                                                      monkeypatch):
    payload = tmp_path / "payload"
    (payload / "ui").mkdir(parents=True)
    (payload / "wvwasi.toml").write_text('[app]\nidentifier = "org.example.one"\n')
    (payload / "ui" / "index.html").write_text("<p>hi")
    exe = tmp_path / "bin" / "myapp"
    exe.parent.mkdir()
    exe.write_bytes(b"\x7fELF pretend executable" * 100)
    append_payload(exe, payload, 1_700_000_000)
    assert exe.read_bytes().startswith(b"\x7fELF pretend executable")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("sys._MEIPASS", str(tmp_path / "meipass"), raising=False)
    found = find_payload(exe)
    cache = tmp_path / "cache" / "wvwasi-code" / "org.example.one" / "onefile"
    assert found.parent.parent == cache and found.name == "app"
    assert files_under(found) == {"wvwasi.toml", "ui/index.html"}
    index = found / "ui" / "index.html"
    stamp = index.stat().st_mtime_ns
    assert find_payload(exe) == found and index.stat().st_mtime_ns == stamp  # not extracted again

    index.write_text("damaged")  # wrong size: extracted again
    assert find_payload(exe) == found and index.read_text() == "<p>hi"
    index.write_text("<p>yo")  # same size, other bytes (SHA-256 checked): extracted again
    assert find_payload(exe) == found and index.read_text() == "<p>hi"
    (payload / "ui" / "index.html").write_text("<p>new build")  # a new build: a new folder
    exe.write_bytes(b"\x7fELF pretend executable" * 100)
    append_payload(exe, payload, 1_700_000_000)
    newer = find_payload(exe)
    assert newer != found and not found.exists() and [p.name for p in cache.iterdir()] == [
        newer.parent.name]

    cache.chmod(0o500)  # a cache that cannot be written: the temporary folder, as before
    shutil.rmtree(newer.parent, ignore_errors=True)
    try:
        if os.access(cache, os.W_OK):  # root ignores modes: make the cache a file instead
            shutil.rmtree(cache)
            cache.write_text("")
        assert find_payload(exe) == tmp_path / "meipass" / "app"
    finally:
        cache.chmod(0o700)
    (exe.parent / "app").mkdir()  # an app folder beside the executable wins
    (exe.parent / "app" / "wvwasi.toml").write_text("")
    assert find_payload(exe) == exe.parent / "app"


def test_executable_without_payload_or_with_a_hostile_archive(tmp_path: Path):
    exe = tmp_path / "app"
    exe.write_bytes(b"plain")
    with pytest.raises(SystemExit, match="no app found"):
        find_payload(exe)
    with zipfile.ZipFile(exe, "a") as z:
        z.writestr("app/../../evil", "x")
    with pytest.raises(SystemExit, match="corrupt app archive"):
        find_payload(exe)


def test_names_and_versions():
    assert slugify("Photo Tools 2") == "photo-tools-2" and slugify("3D!") == "app-3d"
    assert slugify("Élan Café") == "elan-cafe"
    assert package_version("1.2.3-beta.1") == "1.2.3~beta.1"
    assert msi_version("1.2.3-beta+7") == "1.2.3" and numeric_version("1.2") == "1.2.0.0"
    assert upgrade_code("com.example.a") == upgrade_code("com.example.a")
    assert upgrade_code("com.example.a") != upgrade_code("com.example.b")
    assert quote('say "$HOME"') == 'say $\\"$$HOME$\\"'


def test_format_selection(tmp_path: Path):
    project = new_project(tmp_path, "Pick", '[target.macos.bundle]\nformats = ["dmg"]\n')
    linux = load_manifest(project, platform="linux")
    assert select_formats(linux, ()) == ("dir", "tar.gz", "deb", "rpm")
    assert select_formats(linux, ("deb", "dir")) == ("dir", "deb")
    assert select_formats(load_manifest(project, platform="macos"), ()) == ("app", "dmg")
    with pytest.raises(BuildError, match="unknown format 'msix'"):
        select_formats(linux, ("msix",))


def test_staged_manifest_is_resolved_for_the_target(tmp_path: Path):
    extra = ('[bundle]\nresources = ["presets"]\n'
             '[target.windows.services.greet]\nargs = ["--windows"]\n')
    project = new_project(tmp_path, "Resolve", extra, None, "--no-build")
    (project / "presets").mkdir()
    (project / "presets" / "a.json").write_text("{}")
    (project / "build").mkdir()
    (project / "build" / "greet.wasm").write_bytes(b"\0asm\1\0\0\0")
    staged = stage_payload(load_manifest(project, platform="windows"), tmp_path / "payload")
    manifest = load_manifest(staged, platform="windows")
    assert manifest.services["greet"].args == ("--windows",)
    module = content_name(project / "build" / "greet.wasm")  # stored by content
    assert manifest.services["greet"].source == staged / "services" / module
    assert manifest.app.icon == staged / "icon.png" and (staged / "icon.ico").is_file()
    assert (staged / "resources" / "presets" / "a.json").read_text() == "{}"


def test_appimage_appdir_layout(tmp_path: Path):
    project = new_project(tmp_path, "Image App", "", None, "--no-build")
    (project / "build").mkdir()
    (project / "build" / "greet.wasm").write_bytes(b"\0asm\1\0\0\0")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "wvwasi-runtime").write_text("#!/bin/sh\n")
    app = stage_app(load_manifest(project, platform="linux"), runtime, "wvwasi-runtime",
                    tmp_path / "stage", arch=host_arch())
    root = appimage.app_dir(app, tmp_path / "AppDir")
    assert os.access(root / "AppRun", os.X_OK)
    assert "usr/lib/image-app/image-app" in (root / "AppRun").read_text()
    desktop = (root / "com.example.imageapp.desktop").read_text()
    assert "Icon=com.example.imageapp\n" in desktop and "Name=Image App\n" in desktop
    assert (root / "com.example.imageapp.png").is_file()
    assert (root / "usr/lib/image-app/app/wvwasi.toml").is_file()


def test_a_broken_icon_or_executable_is_a_clear_error(tmp_path: Path):
    """winres: a damaged .ico or a runtime executable that is no PE file name the file."""
    bad = tmp_path / "icon.ico"
    bad.write_bytes(b"\0\0\1\0\2\0" + b"\0" * 10)  # says 2 images, holds half of one entry
    with pytest.raises(BuildError, match=r"icon\.ico: not a Windows \.ico file"):
        winres.icon_resources(bad.read_bytes(), bad)
    icons.write_ico(icons.load_icon(None), tmp_path / "good.ico")
    exe = tmp_path / "app.exe"
    exe.write_bytes(b"\x7fELF not for Windows")
    info = AppInfo(name="A", identifier="dev.a", version="1.0", description="", publisher="",
                   icon=None)
    with pytest.raises(BuildError, match=r"app\.exe: not a Windows executable"):
        winres.set_app_resources(exe, tmp_path / "good.ico", info)
    assert winres.numeric_version("2.70000.1-rc.1") == "2.65535.1.0"

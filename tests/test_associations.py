"""File associations and URL schemes, registered by every installer and read back: the .deb
(dpkg-deb contents, then `dpkg -i` and the system's own `xdg-mime`), the .rpm (its file list),
the macOS Info.plist (plistlib) and the NSIS/MSI sources. The Windows installers' registry
writes are read back under Wine in test_windows_wine.py.

A shell script stands in for the frozen runtime (no PyInstaller run): what is checked is what
the packages register, not the app.
"""

from __future__ import annotations

import plistlib
import subprocess
import sys
from pathlib import Path

import pytest
from build_helpers import new_project
from PIL import Image

from wvwasi.packager.formats import FormatOptions, _associations, app, deb, host_arch, rpm
from wvwasi.packager.stage import StagedApp, stage_app
from wvwasi.runtime.manifest import load_manifest

IDENT = "dev.wvwasi.tests.assoc"
SLUG = "assoc-notes"
ASSOCIATIONS = """
[[bundle.file_associations]]
extensions = ["wvnote", "wvnotes"]
mime_type = "application/x-wvwasi-note"
name = "Assoc note"
role = "editor"
icon = "note.png"

[[bundle.file_associations]]
extensions = ["wvlog"]
mime_type = "text/x-wvwasi-log"
name = "Assoc log"
"""


def staged(tmp_path: Path, platform: str) -> StagedApp:
    """The Assoc Notes project staged for `platform` with a script as its runtime."""
    project = new_project(tmp_path / "project", "Assoc Notes", ASSOCIATIONS, IDENT, "--no-build")
    toml = project / "wvwasi.toml"
    toml.write_text(toml.read_text().replace("[app]\n", '[app]\nurl_schemes = ["wvnotes"]\n', 1))
    Image.new("RGBA", (64, 48), (200, 10, 10, 255)).save(project / "note.png")
    (project / "build").mkdir()
    (project / "build" / "greet.wasm").write_bytes(b"\0asm\1\0\0\0")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    exe = "wvwasi-runtime.exe" if platform == "windows" else "wvwasi-runtime"
    (runtime / exe).write_text("#!/bin/sh\nexit 0\n")
    (runtime / exe).chmod(0o755)
    return stage_app(load_manifest(project, platform=platform), runtime, exe,
                     tmp_path / "stage", arch=host_arch())


def deb_contents(package: Path, dest: Path) -> Path:
    """The .deb's files extracted into `dest` (by dpkg-deb itself)."""
    subprocess.run(["dpkg-deb", "-x", package, dest], check=True)
    return dest


DESKTOP = f"/usr/share/applications/{IDENT}.desktop"
MIME_XML = f"/usr/share/mime/packages/{IDENT}.xml"


def test_deb_registers_types_and_scheme_and_the_system_reads_them(tmp_path: Path):
    app_ = staged(tmp_path, "linux")
    (package,) = deb.build(app_, tmp_path, FormatOptions(work=tmp_path / "work"))
    root = deb_contents(package, tmp_path / "x")
    entry = (root / DESKTOP.lstrip("/")).read_text().splitlines()
    assert f"Exec=/usr/bin/{SLUG} %U" in entry
    assert ("MimeType=application/x-wvwasi-note;text/x-wvwasi-log;x-scheme-handler/wvnotes;"
            in entry)
    xml = (root / MIME_XML.lstrip("/")).read_text()
    assert '<glob pattern="*.wvnote"/>' in xml and '<glob pattern="*.wvlog"/>' in xml
    with Image.open(root / "usr/share/icons/hicolor/48x48/mimetypes/"
                    "application-x-wvwasi-note.png") as icon:
        assert icon.size == (48, 48)
    # installed for real: dpkg's trigger runs update-mime-database, then the system's own
    # readers (GIO's MIME database, xdg-mime) see the types and the handler
    subprocess.run(["dpkg", "-i", package], check=True, capture_output=True)
    try:
        guess = subprocess.run(
            [sys.executable, "-c", "from gi.repository import Gio; "
             "print(Gio.content_type_guess('a.wvnote', None)[0])"],
            capture_output=True, text=True, check=True)
        assert guess.stdout.strip() == "application/x-wvwasi-note"
        for mime_type in ("application/x-wvwasi-note", "x-scheme-handler/wvnotes"):
            query = subprocess.run(["xdg-mime", "query", "default", mime_type],
                                   capture_output=True, text=True)
            assert query.stdout.strip() == f"{IDENT}.desktop", (mime_type, query)
    finally:
        subprocess.run(["dpkg", "-r", SLUG], check=True, capture_output=True)
    assert not Path(DESKTOP).exists() and not Path(MIME_XML).exists()


def test_rpm_owns_the_same_registration_files(tmp_path: Path):
    app_ = staged(tmp_path, "linux")
    (package,) = rpm.build(app_, tmp_path, FormatOptions(work=tmp_path / "work"))
    files = subprocess.run(["rpm", "-qlp", package], capture_output=True, text=True,
                           check=True).stdout.split()
    assert DESKTOP in files and MIME_XML in files
    assert "/usr/share/icons/hicolor/256x256/mimetypes/application-x-wvwasi-note.png" in files


def test_no_associations_no_registration(tmp_path: Path):
    project = new_project(tmp_path / "plain", "Plain", "", "dev.wvwasi.tests.plain", "--no-build")
    manifest = load_manifest(project, platform="linux")
    assert _associations.mime_types(manifest) == [] and _associations.mime_xml(manifest) is None
    reg = _associations.windows_registration(manifest)
    assert reg.values == () and reg.keys == ()
    assert _associations.plist_entries(manifest) == {}


def test_macos_info_plist_declares_documents_types_and_schemes(tmp_path: Path):
    app_ = staged(tmp_path, "macos")
    (bundle,) = app.build(app_, tmp_path / "out", FormatOptions(work=tmp_path / "work"))
    with open(bundle / "Contents" / "Info.plist", "rb") as f:
        info = plistlib.load(f)
    note, log = info["CFBundleDocumentTypes"]
    assert note == {"CFBundleTypeName": "Assoc note", "CFBundleTypeRole": "Editor",
                    "LSHandlerRank": "Owner", "LSItemContentTypes": [f"{IDENT}.wvnote"]}
    assert log["CFBundleTypeRole"] == "Viewer"
    exported = {t["UTTypeIdentifier"]: t for t in info["UTExportedTypeDeclarations"]}
    assert exported[f"{IDENT}.wvnote"]["UTTypeTagSpecification"] == {
        "public.filename-extension": ["wvnote", "wvnotes"],
        "public.mime-type": ["application/x-wvwasi-note"]}
    assert info["CFBundleURLTypes"] == [{"CFBundleURLName": IDENT,
                                         "CFBundleURLSchemes": ["wvnotes"]}]


@pytest.mark.parametrize("ident", ["com.example.notes", "com.example." + "x" * 60])
def test_prog_ids_are_short_and_plain(ident: str):
    from wvwasi.runtime.manifest import FileAssociation

    progid = _associations.prog_id(ident, FileAssociation(("my-note",), "text/x-a", "A"))
    assert len(progid) <= _associations.PROGID_MAX
    assert progid.replace(".", "").isalnum()

"""The Windows installers, run for real under Wine (one throwaway prefix for the module).

A mingw-w64 stub program (fixtures/windows/stub.c: records its argv, exits) stands in for the
frozen runtime, which cannot be built here, and for Microsoft's WebView2 installers and
PowerShell. Each test builds a `wvwasi new` project for Windows (`--platform windows --runtime`)
and installs, runs, upgrades and removes it silently, checking files, the Start-menu shortcut and
the registry after every step.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import struct
import subprocess
import time
import zipfile
from pathlib import Path

import pefile
import pytest
from build_helpers import ROOT, cli_env, new_project, wvwasi
from PIL import Image
from wine import (
    RUNTIME_MANIFEST,
    Wine,
    app_files,
    append_overlay,
    build_stub,
    installed,
    reg_delete,
    windows_path,
)
from winsign import make_certificate, signing_env, verified_signer

from wvwasi.packager import winres
from wvwasi.packager.formats import _webview2
from wvwasi.runtime.manifest import AppInfo
from wvwasi.runtime.update.install import MSI_MARKER

WEBVIEW2_KEY = "HKLM\\SOFTWARE\\WOW6432Node\\Microsoft\\EdgeUpdate\\Clients\\" + \
    _webview2.CLIENT_KEY.rsplit("\\", 1)[1]
UNINSTALL = "Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\"


@pytest.fixture(scope="module")
def top(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wine")


@pytest.fixture(scope="module")
def wine(top: Path) -> Wine:
    """One throwaway prefix for the module; fails (never skips) without Wine/mingw-w64."""
    for tool in ("wine", "wineserver", "x86_64-w64-mingw32-gcc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run .ci/setup", pytrace=False)
    return Wine(top / "prefix", top / "stub-logs")


#: Appended to the runtime stub where PyInstaller appends its archive (see wine.append_overlay).
RUNTIME_ARCHIVE = "the frozen runtime's archive"


@pytest.fixture(scope="module")
def stubs(top: Path) -> dict[str, Path]:
    """The stub program as the runtime (onedir/ and onefile/: with a default icon, a manifest
    and an archive appended, like a frozen runtime), the WebView2 bootstrapper and PowerShell."""
    stub = build_stub(top / "stub" / "stub.exe")
    onedir = top / "runtime" / "onedir"
    (onedir / "_internal").mkdir(parents=True)
    (top / "runtime" / "onefile").mkdir()
    for exe in (onedir / "wvwasi-runtime.exe", top / "runtime" / "onefile" / "wvwasi-runtime.exe"):
        build_stub(exe, runtime_resources=True)
        append_overlay(exe, RUNTIME_ARCHIVE)
    (onedir / "_internal" / "python311.dll").write_bytes(b"MZ not really a dll")
    (top / "bootstrapper").mkdir()
    shutil.copy(stub, top / "bootstrapper" / "MicrosoftEdgeWebview2Setup.exe")
    (top / "powershell").mkdir()
    shutil.copy(stub, top / "powershell" / "powershell.exe")
    return {"runtime": top / "runtime",
            "bootstrapper": top / "bootstrapper" / "MicrosoftEdgeWebview2Setup.exe",
            "powershell": top / "powershell"}


def build(parent: Path, stubs: dict[str, Path], name: str, version: str, webview2: str,
          stale: bool = False, extra_toml: str = "") -> dict[str, Path]:
    """A `wvwasi new` project built for Windows as zip, nsis and msi: {format: path}.
    `stale`: ship an extra resource file, which the next version drops; `extra_toml` is
    appended to its wvwasi.toml."""
    project = parent / f"{name}-{version}"
    project.mkdir(parents=True)
    extra = f'[bundle.windows]\nwebview2 = "{webview2}"\n{extra_toml}'
    if stale:
        extra = '[bundle]\nresources = ["old.txt"]\n' + extra
    path = new_project(project, name, extra, identifier=f"dev.wvwasi.wine.{name.lower()}")
    (path / "old.txt").write_text("from the old version")
    toml = path / "wvwasi.toml"
    toml.write_text(toml.read_text().replace('version = "0.1.0"', f'version = "{version}"'))
    proc = wvwasi("build", path, "--platform", "windows", "--runtime", stubs["runtime"],
                  "--out", project / "dist", "--json", "--format", "zip", "--format", "nsis",
                  "--format", "msi",
                  env=cli_env(WVWASI_WEBVIEW2_BOOTSTRAPPER=str(stubs["bootstrapper"])))
    assert proc.returncode == 0, proc.stderr
    return {a["format"]: Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]}


def test_nsis_setup_installs_runs_refuses_while_running_upgrades_and_uninstalls(
    wine: Wine, stubs: dict[str, Path], top: Path
):
    reg_delete(wine, WEBVIEW2_KEY)
    v1 = build(top / "nsis", stubs, "Nsis", "0.1.0", "embed-bootstrapper", stale=True)
    v2 = build(top / "nsis", stubs, "Nsis", "0.2.0", "embed-bootstrapper")
    folder = wine.local_appdata / "Programs" / "nsis"
    key = UNINSTALL + "dev.wvwasi.wine.nsis"

    assert wine.run(v1["nsis"], "/S") == 0
    assert installed(folder) == app_files(v1["zip"]) | {"uninstall.exe"}
    assert "app/resources/old.txt" in installed(folder)
    assert (wine.start_menu / "Nsis.lnk").is_file()
    entry = wine.registry()[key]
    assert entry["DisplayName"] == "Nsis" and entry["DisplayVersion"] == "0.1.0"
    assert entry["QuietUninstallString"].endswith('\\nsis\\uninstall.exe" /S')
    # no WebView2 runtime registered: the embedded bootstrapper ran, silently
    (call,) = wine.stub_calls("MicrosoftEdgeWebview2Setup.exe")
    assert call[1:] == ["/silent", "/install"]

    assert wine.run(folder / "nsis.exe", "--self-test", "a b") == 0
    (run,) = wine.stub_calls("nsis.exe")
    assert run[0].endswith("\\Programs\\nsis\\nsis.exe") and run[1:] == ["--self-test", "a b"]

    release = top / "release-nsis"
    app = wine.start(folder / "nsis.exe", "--hold", windows_path(release))
    try:
        deadline = time.monotonic() + 60
        while len(wine.stub_calls("nsis.exe")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        # the app is running: refused, nothing changed
        assert wine.run(v2["nsis"], "/S", settle=False) == 5
        # (`_?=`: the uninstaller runs in place, not from a copy, so its status is seen)
        assert wine.run(folder / "uninstall.exe", "/S", f"_?={windows_path(folder)}",
                        settle=False) == 5
        assert app.poll() is None  # refused because it still runs
        assert wine.registry()[key]["DisplayVersion"] == "0.1.0"
        assert "app/resources/old.txt" in installed(folder)
    finally:
        release.touch()
        app.wait(60)
        wine.wait()

    wine.reg_add(WEBVIEW2_KEY, "pv", "120.0.2210.91")
    assert wine.run(v2["nsis"], "/S") == 0
    assert installed(folder) == app_files(v2["zip"]) | {"uninstall.exe"}  # no stale file
    assert wine.registry()[key]["DisplayVersion"] == "0.2.0"
    assert len(wine.stub_calls("MicrosoftEdgeWebview2Setup.exe")) == 1  # runtime present

    assert wine.run(folder / "uninstall.exe", "/S") == 0
    assert not folder.exists()
    assert not (wine.start_menu / "Nsis.lnk").exists()
    assert key not in wine.registry()
    assert "Software\\dev.wvwasi.wine.nsis" not in wine.registry()


def msi_table(msi: Path, table: str) -> list[list[str]]:
    """Rows of an MSI table (msiinfo export; the first three lines are the header)."""
    text = subprocess.run(["msiinfo", "export", msi, table], capture_output=True, text=True,
                          check=True).stdout
    return [line.split("\t") for line in text.splitlines()[3:]]


def msi_entry(wine: Wine, name: str) -> dict[str, str] | None:
    """The Add/Remove Programs entry Windows Installer wrote for product `name` (either hive)."""
    for hive in ("user", "system"):
        for key, values in wine.registry(hive).items():
            if "\\Uninstall\\{" in key and values.get("DisplayName") == name:
                return values
    return None


def test_msi_installs_runs_the_embedded_webview2_bootstrapper_upgrades_and_uninstalls(
    wine: Wine, stubs: dict[str, Path], top: Path
):
    reg_delete(wine, WEBVIEW2_KEY)
    v1 = build(top / "msi", stubs, "Msi", "0.1.0", "embed-bootstrapper", stale=True)
    v2 = build(top / "msi", stubs, "Msi", "0.2.0", "skip")
    folder = wine.local_appdata / "Programs" / "msi"
    before = len(wine.stub_calls("MicrosoftEdgeWebview2Setup.exe"))

    assert wine.run("msiexec", "/i", v1["msi"], "/qn") == 0
    assert installed(folder) == app_files(v1["zip"]) | {
        "webview2/MicrosoftEdgeWebview2Setup.exe", MSI_MARKER}
    assert (wine.start_menu / "Msi.lnk").is_file()
    entry = msi_entry(wine, "Msi")
    assert entry is not None and entry["DisplayVersion"] == "0.1.0"
    calls = wine.stub_calls("MicrosoftEdgeWebview2Setup.exe")[before:]
    assert [c[1:] for c in calls] == [["/silent", "/install"]]
    assert calls[0][0].endswith("\\Programs\\msi\\webview2\\MicrosoftEdgeWebview2Setup.exe")

    assert wine.run(folder / "msi.exe", "--self-test") == 0
    assert wine.stub_calls("msi.exe")[-1][1:] == ["--self-test"]

    release = top / "release-msi"
    app = wine.start(folder / "msi.exe", "--hold", windows_path(release))
    log = top / "msi-refused.log"
    try:
        deadline = time.monotonic() + 60
        while len(wine.stub_calls("msi.exe")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        # the app is running: the upgrade and the removal are refused, with the message
        # (1603, ERROR_INSTALL_FAILURE: Wine's exit statuses are 8 bits wide on Linux)
        assert wine.run("msiexec", "/i", v2["msi"], "/qn", "/l*", windows_path(log),
                        settle=False) == 1603 % 256
        # the script found it running; the launch condition's message is shown in UI modes
        assert "Property(S): WVWASI_APP_RUNNING = 1" in log.read_text("utf-8", "replace")
        assert ["NOT WVWASI_APP_RUNNING", "Msi is running. Close it, then try again."] in \
            msi_table(v2["msi"], "LaunchCondition")
        assert wine.run("msiexec", "/x", v1["msi"], "/qn", settle=False) == 1603 % 256
        assert app.poll() is None  # refused because it still runs
        assert msi_entry(wine, "Msi")["DisplayVersion"] == "0.1.0"
        assert installed(folder) == app_files(v1["zip"]) | {
            "webview2/MicrosoftEdgeWebview2Setup.exe", MSI_MARKER}
    finally:
        release.touch()
        app.wait(60)
        wine.wait()

    assert wine.run("msiexec", "/i", v2["msi"], "/qn") == 0  # MajorUpgrade
    assert installed(folder) == app_files(v2["zip"]) | {MSI_MARKER}  # no stale file nor
    # bootstrapper; the marker tells the app's updater how it was installed
    assert msi_entry(wine, "Msi")["DisplayVersion"] == "0.2.0"
    assert len(wine.stub_calls("MicrosoftEdgeWebview2Setup.exe")) == before + 1  # "skip"

    assert wine.run("msiexec", "/x", v2["msi"], "/qn") == 0
    assert not folder.exists()
    assert not (wine.start_menu / "Msi.lnk").exists()
    assert msi_entry(wine, "Msi") is None


def test_download_mode_runs_powershell_and_a_failed_download_installs_nothing(
    wine: Wine, stubs: dict[str, Path], top: Path
):
    """The bootstrapper download itself needs the internet: a stub PowerShell records the
    command (and downloads nothing), so the installer must stop (status 6) before installing."""
    reg_delete(wine, WEBVIEW2_KEY)
    setup = build(top / "download", stubs, "Download", "0.1.0", "download-bootstrapper")["nsis"]
    folder = wine.local_appdata / "Programs" / "download"
    path = {"WINEPATH": windows_path(stubs["powershell"])}
    assert wine.run(setup, "/S", extra_env=path) == 6
    (call,) = wine.stub_calls("powershell.exe")
    assert call[1:6] == ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
                         "-Command"]
    assert f"-Uri '{_webview2.BOOTSTRAPPER_URL}'" in call[6]
    assert call[6].endswith("\\MicrosoftEdgeWebview2Setup.exe'")
    assert not folder.exists() and UNINSTALL + "dev.wvwasi.wine.download" not in wine.registry()

    wine.reg_add(WEBVIEW2_KEY, "pv", "120.0.2210.91")  # runtime present: no download at all
    assert wine.run(setup, "/S", extra_env=path) == 0
    assert len(wine.stub_calls("powershell.exe")) == 1
    assert (folder / "download.exe").is_file()
    assert wine.run(folder / "uninstall.exe", "/S") == 0
    assert not folder.exists()


ASSOCIATIONS = """
[[bundle.file_associations]]
extensions = ["wvnote"]
mime_type = "application/x-wvwasi-note"
name = "Wine note"
role = "editor"

[target.windows.app]
url_schemes = ["wvwine"]
"""


def association_keys(wine: Wine, progid: str, scheme: str) -> dict[str, dict[str, str]]:
    """The HKCU\\Software\\Classes keys an install registered for the note type and scheme."""
    classes = "Software\\Classes\\"
    return {k[len(classes):]: v for k, v in wine.registry().items()
            if k.startswith(classes) and k[len(classes):].split("\\")[0] in
            (progid, scheme, ".wvnote")}


@pytest.mark.parametrize("fmt", ["nsis", "msi"])
def test_installers_register_the_file_type_and_url_scheme_per_user(
    wine: Wine, stubs: dict[str, Path], top: Path, fmt: str
):
    wine.reg_add(WEBVIEW2_KEY, "pv", "120.0.2210.91")
    name = f"Assoc{fmt}"
    slug = name.lower()
    built = build(top / f"assoc-{fmt}", stubs, name, "0.1.0", "skip", extra_toml=ASSOCIATIONS)
    progid = f"dev.wvwasi.wine.{slug}.wvnote"
    exe = f"{windows_path(wine.local_appdata)}\\Programs\\{slug}\\{slug}.exe"
    exe = "C:\\users\\" + exe.split("\\users\\", 1)[1]
    if fmt == "nsis":
        assert wine.run(built["nsis"], "/S") == 0
    else:
        assert wine.run("msiexec", "/i", built["msi"], "/qn") == 0
    keys = association_keys(wine, progid, "wvwine")
    command = keys[f"{progid}\\shell\\open\\command"][""]
    assert command.lower() == f'"{exe}" "%1"'.lower()
    assert keys[progid][""] == "Wine note"
    assert keys[f"{progid}\\DefaultIcon"][""].lower().endswith('\\app\\icon.ico",0')
    assert progid in keys[".wvnote\\OpenWithProgids"]
    assert keys["wvwine"][""] == f"URL:{name}" and keys["wvwine"]["URL Protocol"] == ""
    assert keys["wvwine\\shell\\open\\command"][""].lower() == command.lower()

    if fmt == "nsis":
        assert wine.run(wine.local_appdata / "Programs" / slug / "uninstall.exe", "/S") == 0
    else:
        assert wine.run("msiexec", "/x", built["msi"], "/qn") == 0
    left = association_keys(wine, progid, "wvwine")
    assert not [k for k, v in left.items() if v and not k.startswith(".wvnote")], left
    assert progid not in left.get(".wvnote\\OpenWithProgids", {})


def resources(exe: Path) -> dict[int, dict[int, bytes]]:
    """{resource type: {resource number: data}} of a Windows executable, read with pefile."""
    pe = pefile.PE(str(exe))
    found: dict[int, dict[int, bytes]] = {}
    for kind in pe.DIRECTORY_ENTRY_RESOURCE.entries:
        for entry in kind.directory.entries:
            (lang,) = entry.directory.entries
            found.setdefault(kind.id, {})[entry.id] = pe.get_data(lang.data.struct.OffsetToData,
                                                                  lang.data.struct.Size)
    assert pe.verify_checksum()
    return found


def ico_images(ico: bytes) -> list[tuple[bytes, bytes]]:
    """(12-byte directory entry without the offset, image bytes) of each image of an .ico."""
    (count,) = struct.unpack_from("<H", ico, 4)
    images = []
    for i in range(count):
        entry = ico[6 + 16 * i:6 + 16 * i + 16]
        size, offset = struct.unpack_from("<2I", entry, 8)
        images.append((entry[:12], ico[offset:offset + size]))
    return images


def test_the_app_exe_has_its_own_icon_and_version_and_keeps_the_runtime_archive(
    wine: Wine, stubs: dict[str, Path], top: Path
):
    """The runtime's default icon is replaced by the app's, a version resource is written from
    [app], the runtime's manifest stays, and the archive appended to the runtime (PyInstaller's
    PKG) still ends the file: the program starts under Wine, Windows' own version and icon APIs
    read the new resources, and it finds its archive searching back from the end."""
    project = new_project(top / "res", "Résumé Tool", identifier="dev.wvwasi.wine.res")
    Image.new("RGBA", (300, 200), (200, 40, 40, 255)).save(project / "logo.png")
    toml = project / "wvwasi.toml"
    app = 'publisher = "Ünïcode Tools Ltd"\nicon = "logo.png"'
    toml.write_text(toml.read_text().replace('version = "0.1.0"', 'version = "2.7.1-rc.1"')
                    .replace('publisher = ""', app))
    proc = wvwasi("build", project, "--platform", "windows", "--runtime", stubs["runtime"],
                  "--out", top / "res" / "dist", "--json", "--format", "zip", "--format",
                  "onefile", env=cli_env())
    assert proc.returncode == 0, proc.stderr
    built = {a["format"]: Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"]}
    with zipfile.ZipFile(built["zip"]) as z:
        z.extractall(top / "res" / "app")
    (folder,) = (top / "res" / "app").iterdir()
    ico = (folder / "app" / "icon.ico").read_bytes()

    for exe in (folder / "resume-tool.exe", built["onefile"]):
        res = resources(exe)
        assert set(res) == {pefile.RESOURCE_TYPE[t] for t in
                            ("RT_ICON", "RT_GROUP_ICON", "RT_VERSION", "RT_MANIFEST")}
        assert res[24][1].decode() == RUNTIME_MANIFEST  # the runtime's own manifest, kept
        images = ico_images(ico)
        assert len(images) == 7 and len(res[3]) == 7  # the app's sizes, not the runtime's 2
        (group,) = res[14].values()
        assert struct.unpack_from("<3H", group) == (0, 1, 7)
        for i, (entry, data) in enumerate(images):
            assert group[6 + 14 * i:6 + 14 * i + 12] == entry  # size, colours, planes, bytes
            (number,) = struct.unpack_from("<H", group, 6 + 14 * i + 12)
            assert res[3][number] == data
        pe = pefile.PE(str(exe))
        (strings,) = [t.entries for info in pe.FileInfo[0] if hasattr(info, "StringTable")
                      for t in info.StringTable]
        assert {k.decode(): v.decode() for k, v in strings.items()} == {
            "CompanyName": "Ünïcode Tools Ltd", "FileDescription": "Résumé Tool, a wvwasi app",
            "FileVersion": "2.7.1-rc.1", "InternalName": "resume-tool",
            "OriginalFilename": "resume-tool.exe", "ProductName": "Résumé Tool",
            "ProductVersion": "2.7.1-rc.1"}
        fixed = pe.VS_FIXEDFILEINFO[0]
        assert (fixed.FileVersionMS, fixed.FileVersionLS) == (2 << 16 | 7, 1 << 16)

    assert wine.run(folder / "resume-tool.exe", "--info", "a b", "ü") == 0
    assert wine.stub_calls("resume-tool.exe")[-1][1:] == ["--info", "a b", "ü"]
    assert wine.stub_info("resume-tool.exe") == {
        "ProductName": "Résumé Tool", "ProductVersion": "2.7.1-rc.1",
        "FileVersion": "2.7.1-rc.1", "CompanyName": "Ünïcode Tools Ltd",
        "FileDescription": "Résumé Tool, a wvwasi app", "OriginalFilename": "resume-tool.exe",
        "icons": "1", "overlay": RUNTIME_ARCHIVE}

    onefile = top / "res" / "onefile" / "resume-tool.exe"
    onefile.parent.mkdir()
    shutil.copy(built["onefile"], onefile)
    with zipfile.ZipFile(onefile) as z:  # the payload appended after the archive reads back
        assert z.read("app/icon.ico") == ico
    assert wine.run(onefile, "--info") == 0
    info = wine.stub_info("resume-tool.exe")
    assert info["overlay"] == RUNTIME_ARCHIVE and info["ProductName"] == "Résumé Tool"


def test_a_signed_setup_installs_a_signed_app_and_a_signed_uninstaller(
    wine: Wine, stubs: dict[str, Path], top: Path
):
    """makensis signs the uninstaller as it writes it (`!uninstfinalize`), so the
    uninstall.exe the setup writes at install time carries the app's signature, as do the
    setup and the app's executable (whose appended archive is still found)."""
    pfx = make_certificate(top / "cert")
    project = new_project(top / "signed", "Signed", '[bundle.windows]\nsign = true\n'
                          'webview2 = "skip"\n', identifier="dev.wvwasi.wine.signed")
    proc = wvwasi("build", project, "--platform", "windows", "--runtime", stubs["runtime"],
                  "--out", top / "signed" / "dist", "--json", "--format", "nsis",
                  env=cli_env(**signing_env(pfx)))
    assert proc.returncode == 0, proc.stderr
    (setup,) = (Path(a["path"]) for a in json.loads(proc.stdout)["artefacts"])
    assert verified_signer(setup, pfx)

    assert wine.run(setup, "/S") == 0
    folder = wine.local_appdata / "Programs" / "signed"
    assert verified_signer(folder / "uninstall.exe", pfx)
    assert verified_signer(folder / "signed.exe", pfx)
    assert wine.run(folder / "signed.exe", "--info") == 0
    assert wine.stub_info("signed.exe")["overlay"] == RUNTIME_ARCHIVE
    assert wine.run(folder / "uninstall.exe", "/S") == 0
    assert not folder.exists()


def pyinstaller_bootloader() -> bytes:
    """PyInstaller's Windows console bootloader, from its win_amd64 wheel (.ci/setup fetches
    the locked version into .ci/wheels)."""
    version = importlib.metadata.version("pyinstaller")
    wheel = ROOT / ".ci" / "wheels" / f"pyinstaller-{version}-py3-none-win_amd64.whl"
    if not wheel.is_file():
        pytest.fail(f"{wheel} is missing: run .ci/setup", pytrace=False)
    with zipfile.ZipFile(wheel) as z:
        return z.read("PyInstaller/bootloader/Windows-64bit-intel/run.exe")


def test_pyinstallers_own_bootloader_still_reads_its_archive_after_the_resources_change(
    wine: Wine, top: Path
):
    """The real frozen-runtime layout: PyInstaller's Windows bootloader with a PKG archive
    written by PyInstaller's own CArchiveWriter appended. After winres rewrites the resources
    (and after signing), the bootloader still finds the archive and reads its table of contents
    (the contents-directory option in it names the folder it then loads Python from); a
    bootloader without the archive says so instead."""
    from PyInstaller.archive.writers import CArchiveWriter

    work = top / "bootloader"
    work.mkdir()
    CArchiveWriter(str(work / "pkg"), [("pyi-contents-directory _probe", "", False, "o")],
                   "python311.dll")
    boot = pyinstaller_bootloader()
    (work / "bare.exe").write_bytes(boot)
    exe = work / "app.exe"
    exe.write_bytes(boot + (work / "pkg").read_bytes())
    Image.new("RGBA", (64, 64), (0, 120, 0, 255)).save(work / "app.ico", sizes=[(16, 16), (64, 64)])
    info = AppInfo(name="Probe", identifier="dev.wvwasi.probe", version="3.1.4",
                   description="", publisher="", icon=None)
    winres.set_app_resources(exe, work / "app.ico", info)
    assert resources(exe)[16]  # a version resource now, and the archive still at the end
    assert exe.read_bytes().endswith((work / "pkg").read_bytes())

    missing = "Could not load PyInstaller's embedded PKG archive"
    assert missing in wine.output(work / "bare.exe")
    loads = f"Failed to load Python DLL '{windows_path(work)}\\_probe\\python311.dll'"
    out = wine.output(exe)
    assert loads in out and missing not in out

    pfx = make_certificate(work / "cert")
    subprocess.run(["osslsigncode", "sign", "-pkcs12", pfx, "-pass", signing_env(pfx)[
        "WVWASI_WINDOWS_CERT_PASSWORD"], "-in", exe, "-out", work / "signed.exe"], check=True,
        capture_output=True)
    assert verified_signer(work / "signed.exe", pfx)
    assert loads in wine.output(work / "signed.exe")

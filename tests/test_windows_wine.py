"""The Windows installers, run for real under Wine (one throwaway prefix for the module).

A mingw-w64 stub program (fixtures/windows/stub.c: records its argv, exits) stands in for the
frozen runtime, which cannot be built here, and for Microsoft's WebView2 installers and
PowerShell. Each test builds a `wvwasi new` project for Windows (`--platform windows --runtime`)
and installs, runs, upgrades and removes it silently, checking files, the Start-menu shortcut and
the registry after every step.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from build_helpers import cli_env, new_project, wvwasi
from wine import Wine, build_stub, reg_delete, windows_path

from wvwasi.packager.formats import _webview2

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


@pytest.fixture(scope="module")
def stubs(top: Path) -> dict[str, Path]:
    """The stub program as the runtime (onedir/), the WebView2 bootstrapper and PowerShell."""
    stub = build_stub(top / "stub" / "stub.exe")
    onedir = top / "runtime" / "onedir"
    (onedir / "_internal").mkdir(parents=True)
    shutil.copy(stub, onedir / "wvwasi-runtime.exe")
    (onedir / "_internal" / "python311.dll").write_bytes(b"MZ not really a dll")
    (top / "bootstrapper").mkdir()
    shutil.copy(stub, top / "bootstrapper" / "MicrosoftEdgeWebview2Setup.exe")
    (top / "powershell").mkdir()
    shutil.copy(stub, top / "powershell" / "powershell.exe")
    return {"runtime": top / "runtime",
            "bootstrapper": top / "bootstrapper" / "MicrosoftEdgeWebview2Setup.exe",
            "powershell": top / "powershell"}


def build(parent: Path, stubs: dict[str, Path], name: str, version: str, webview2: str,
          stale: bool = False) -> dict[str, Path]:
    """A `wvwasi new` project built for Windows as zip, nsis and msi: {format: path}.
    `stale`: ship an extra resource file, which the next version drops."""
    project = parent / f"{name}-{version}"
    project.mkdir(parents=True)
    extra = f'[bundle.windows]\nwebview2 = "{webview2}"\n'
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


def app_files(zip_path: Path) -> set[str]:
    """The app folder's files, as the zip format packs them (paths inside the folder)."""
    with zipfile.ZipFile(zip_path) as z:
        return {n.split("/", 1)[1] for n in z.namelist() if not n.endswith("/")}


def installed(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


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
        assert wine.run(v2["nsis"], "/S") == 5  # the app is running: refused, nothing changed
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
        "webview2/MicrosoftEdgeWebview2Setup.exe"}
    assert (wine.start_menu / "Msi.lnk").is_file()
    entry = msi_entry(wine, "Msi")
    assert entry is not None and entry["DisplayVersion"] == "0.1.0"
    calls = wine.stub_calls("MicrosoftEdgeWebview2Setup.exe")[before:]
    assert [c[1:] for c in calls] == [["/silent", "/install"]]
    assert calls[0][0].endswith("\\Programs\\msi\\webview2\\MicrosoftEdgeWebview2Setup.exe")

    assert wine.run(folder / "msi.exe", "--self-test") == 0
    assert wine.stub_calls("msi.exe")[-1][1:] == ["--self-test"]

    assert wine.run("msiexec", "/i", v2["msi"], "/qn") == 0  # MajorUpgrade
    assert installed(folder) == app_files(v2["zip"])  # no stale file, no bootstrapper
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

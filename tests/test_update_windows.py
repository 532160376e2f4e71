"""The Windows update's parts that run anywhere: how an installation is recognised, what is
handed to the setup, and `wvwasi.app.relaunch()` after a Windows install. Starting a Windows
process is what cannot happen here (subprocess.Popen is recorded instead); the real setups run
under Wine in tests/test_windows_cross.py."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wvwasi.runtime import app as app_module
from wvwasi.runtime.update import install


@pytest.mark.parametrize(("files", "bundle"), [
    ((install.MSI_MARKER,), "msi"), (("uninstall.exe",), "nsis"),
    ((install.MSI_MARKER, "uninstall.exe"), "msi"), ((), "zip")])
def test_how_a_windows_app_was_installed(files: tuple[str, ...], bundle: str, tmp_path: Path):
    (tmp_path / "app.exe").write_bytes(b"MZ")
    for name in files:
        (tmp_path / name).write_text("x")
    assert install.windows_bundle(tmp_path) == bundle


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `subprocess.Popen` was called with (no process is started); no setup started
    before the test."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(install, "_started", [])
    monkeypatch.setattr(install.subprocess, "Popen",
                        lambda command, **kw: calls.append({"command": command, **kw}))
    return calls


def msi_update(tmp_path: Path) -> tuple[install.Installation, Path]:
    folder = tmp_path / "Programs" / "app"
    folder.mkdir(parents=True)
    (folder / "app.exe").write_bytes(b"MZ")
    (folder / install.MSI_MARKER).write_text("x")
    package = tmp_path / "Programs" / ".app.update-1" / "download" / "app-1.0.1.msi"
    package.parent.mkdir(parents=True)
    package.write_bytes(b"msi")
    return install.Installation("msi", folder, folder / "app.exe"), package


def test_the_msi_script_gets_the_paths_in_its_environment(started: list[dict[str, Any]],
                                                          tmp_path: Path):
    inst, package = msi_update(tmp_path)
    install.install(inst, package, "1.0.1", "dev.x", "passive")
    (call,) = started
    work = package.parent
    assert call["command"] == ["cmd.exe", "/d", "/c", "update.cmd"] and call["cwd"] == work
    script = (work / "update.cmd").read_bytes()
    assert script == install.MSI_SCRIPT.encode("ascii") and b"\n" not in script.replace(
        b"\r\n", b"")  # cmd.exe's line ends; no path in it: they come in the environment
    env = call["env"]
    assert env["WVWASI_UPDATE_EXE"] == str(inst.executable)
    assert env["WVWASI_UPDATE_PACKAGE"] == str(package)
    assert env["WVWASI_UPDATE_SWITCHES"] == "/passive /norestart"
    assert env["WVWASI_UPDATE_FOLDER"] == str(inst.path)
    assert env["PYINSTALLER_RESET_ENVIRONMENT"] == "1"  # the relaunched app is not a child
    # relaunch() makes the very file the script looks for
    assert not Path(env["WVWASI_UPDATE_RELAUNCH"]).exists()
    assert install.request_relaunch()
    assert Path(env["WVWASI_UPDATE_RELAUNCH"]).is_file()


def test_the_nsis_setup_runs_in_update_mode_from_its_folder(started: list[dict[str, Any]],
                                                            tmp_path: Path):
    folder = tmp_path / "app"
    folder.mkdir()
    setup = tmp_path / ".app.update-1" / "download" / "app-1.0.1-setup.exe"
    setup.parent.mkdir(parents=True)
    setup.write_bytes(b"MZ")
    install.install(install.Installation("nsis", folder, folder / "app.exe"), setup, "1.0.1",
                    "dev.x", "quiet")
    (call,) = started
    assert call["command"] == [str(setup), "/S", "/UPDATE"] and call["cwd"] == setup.parent
    assert install.request_relaunch()  # the setup looks for $EXEDIR\relaunch
    assert (setup.parent / install.RELAUNCH_FLAG).is_file()


def app_relaunching(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[list[str]]]:
    """An App's relaunch (as `wvwasi.app.relaunch()` calls it) with its window and the process
    start recorded."""
    launched: list[list[str]] = []
    monkeypatch.setattr(app_module, "relaunch", lambda command, primary: launched.append(command))
    monkeypatch.delenv("WVWASI_ONEFILE", raising=False)
    closed: list[bool] = []
    fake = SimpleNamespace(primary=None, window=SimpleNamespace(close=lambda: closed.append(True)))
    fake.closed = closed
    return fake, launched


def test_relaunch_after_a_windows_install_leaves_the_start_to_the_setup(
        started: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Starting the executable now would start the OLD version, which the setup, waiting for
    it to exit, would then wait for in turn: the setup starts the new one instead."""
    inst, package = msi_update(tmp_path)
    install.install(inst, package, "1.0.1", "dev.x", "quiet")
    fake, launched = app_relaunching(monkeypatch)
    app_module.App._relaunch(fake)
    assert launched == [] and fake.closed == [True]
    assert (package.parent / install.RELAUNCH_FLAG).is_file()


def test_relaunch_without_a_windows_install_starts_the_app(
        started: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch):
    fake, launched = app_relaunching(monkeypatch)
    app_module.App._relaunch(fake)
    assert launched == [[sys.executable]] and fake.closed == [True]


def test_a_setup_that_cannot_start_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def refuse(command: list[str], **kw: Any) -> None:
        raise OSError(2, "No such file or directory")

    monkeypatch.setattr(install, "_started", [])
    monkeypatch.setattr(install.subprocess, "Popen", refuse)
    inst, package = msi_update(tmp_path)
    with pytest.raises(install.InstallError, match="cannot start the installer") as failed:
        install.install(inst, package, "1.0.1", "dev.x", "passive")
    assert "\n" not in str(failed.value)
    assert not install.request_relaunch()  # nothing started: relaunch() starts the app itself

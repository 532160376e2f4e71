"""The window backend modules share one contract (GUI, LOCAL_INSPECTOR, prepare(),
cancel_dialogs()); the Windows module's WebView2 detection and its message box, driven through
its registry reader and message-box hooks (winreg and MessageBoxW exist only on Windows)."""

from __future__ import annotations

import sys

import pytest

from wvwasi.packager.formats import _webview2
from wvwasi.runtime.manifest import load_manifest
from wvwasi.runtime.window import backend_for, gtk, qt, webview2, wkwebview

WOW = webview2.LOCATIONS[0][1]


@pytest.mark.parametrize("module", [gtk, qt, webview2, wkwebview])
def test_every_backend_module_has_the_same_contract(module):
    assert isinstance(module.GUI, str) and isinstance(module.LOCAL_INSPECTOR, bool)
    assert callable(module.prepare) and callable(module.cancel_dialogs)


def test_the_app_and_its_installers_look_for_webview2_at_the_same_key():
    assert webview2.CLIENT_KEY == _webview2.CLIENT_KEY
    assert WOW == "SOFTWARE\\WOW6432Node\\Microsoft\\EdgeUpdate\\Clients\\" \
        "{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}"


@pytest.mark.parametrize(("registry", "version"), [
    ({}, None),
    ({("HKLM", WOW): "120.0.2210.91"}, "120.0.2210.91"),
    ({("HKCU", webview2.CLIENT_KEY): "119.0.1"}, "119.0.1"),
    ({("HKLM", WOW): "0.0.0.0"}, None),  # what an uninstall leaves behind
    ({("HKLM", WOW): "0.0.0.0", ("HKCU", webview2.CLIENT_KEY): "118.0"}, "118.0"),
])
def test_webview2_version_from_the_registry(registry, version):
    def read(root, key, name):
        assert name == "pv"
        return registry.get((root, key))
    assert webview2.installed_version(read) == version


def test_a_missing_webview2_runtime_shows_a_message_box_and_stops_the_app():
    shown: list[tuple[str, str]] = []
    with pytest.raises(ImportError) as error:
        webview2.prepare(read=lambda *_: None, show=lambda title, text: shown.append((title, text)))
    assert str(error.value) == ("the Microsoft Edge WebView2 Runtime is not installed: install "
                                f"it from {webview2.DOWNLOAD_PAGE}")
    assert shown == [("WebView2 Runtime missing", webview2.MISSING)]
    assert "needs the Microsoft Edge WebView2 Runtime" in shown[0][1]
    assert webview2.DOWNLOAD_PAGE in shown[0][1]
    webview2.prepare(read=lambda *_: "120.0", show=lambda *_: pytest.fail("no box when present"))


def test_wkwebview_names_what_to_install_where_pyobjc_is_missing():
    if sys.platform == "darwin":
        pytest.skip("PyObjC is there on macOS")
    with pytest.raises(ImportError, match="install PyObjC"):
        wkwebview.prepare()


@pytest.mark.parametrize(("platform", "expected"), [
    ("linux", "gtk"), ("win32", "webview2"), ("darwin", "wkwebview"), ("freebsd14", None)])
def test_backend_for_each_os(platform, expected, monkeypatch, tmp_path):
    (tmp_path / "wvwasi.toml").write_text('[app]\nname = "B"\nidentifier = "dev.b.b"\n'
                                          'version = "1.0.0"\n[ui]\ndir = "."\n')
    (tmp_path / "index.html").write_text("<!doctype html>")
    manifest = load_manifest(tmp_path, platform="linux")
    monkeypatch.setattr(sys, "platform", platform)
    assert backend_for(manifest) == expected

"""The window backend modules share one contract (GUI, LOCAL_INSPECTOR, prepare(),
cancel_dialogs(), listen_for_opens()); the Windows module's WebView2 detection and its message
box, driven through its registry reader and message-box hooks (winreg and MessageBoxW exist only
on Windows); macOS's Apple-event document opening: the frozen runtime's argv emulation and the
running app's `application:openURLs:` handler, driven with the event's data (PyObjC and AppKit
exist only on macOS)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from wvwasi.packager.formats import _webview2
from wvwasi.packager.freeze import TEMPLATES, freeze_config
from wvwasi.runtime.app import App
from wvwasi.runtime.manifest import load_manifest
from wvwasi.runtime.window import backend_for, gtk, qt, webview2, wkwebview

WOW = webview2.LOCATIONS[0][1]


@pytest.mark.parametrize("module", [gtk, qt, webview2, wkwebview])
def test_every_backend_module_has_the_same_contract(module):
    assert isinstance(module.GUI, str) and isinstance(module.LOCAL_INSPECTOR, bool)
    assert callable(module.prepare) and callable(module.cancel_dialogs)
    assert callable(module.listen_for_opens)


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


@pytest.mark.parametrize(("system", "backend"), [("macos", "native"), ("windows", "native")])
def test_only_the_macos_runtime_turns_launch_apple_events_into_argv(
    system: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """freeze.json asks PyInstaller's bootloader for argv emulation on macOS only, and
    templates/runtime.spec hands it to EXE (run here with PyInstaller's build classes recorded)."""
    config = freeze_config(backend, "onedir", tmp_path, system)  # type: ignore[arg-type]
    (tmp_path / "freeze.json").write_text(json.dumps({**config, "pathex": [str(tmp_path)]}))
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_data_files = hooks.collect_dynamic_libs = hooks.collect_submodules = (  # type: ignore[attr-defined]
        lambda *a, **k: [])
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    monkeypatch.setattr(sys, "path", list(sys.path))
    exes: list[dict[str, Any]] = []

    class Analysis:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.binaries, self.datas, self.scripts, self.pure = [], [], [], []

    spec = TEMPLATES / "runtime.spec"
    exec(compile(spec.read_text(), str(spec), "exec"), {
        "SPECPATH": str(tmp_path), "Analysis": Analysis, "PYZ": lambda *a, **k: None,
        "EXE": lambda *a, **k: exes.append(k), "COLLECT": lambda *a, **k: None})
    (exe,) = exes
    assert exe["argv_emulation"] is (system == "macos") and exe["console"] is False


class NSURL:
    """What PyObjC hands the handler for each URL of an open Apple event."""

    def __init__(self, url: str) -> None:
        self.url = url

    def isFileURL(self) -> bool:
        return self.url.startswith("file://")

    def path(self) -> str:
        return self.url.removeprefix("file://").replace("%20", " ")

    def absoluteString(self) -> str:
        return self.url


def test_a_macos_open_apple_event_reaches_the_page_like_a_later_launch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`application:openURLs:` (added to pywebview's app delegate with a PyObjC category,
    stood in for here) forwards the files and the app's URLs; the app sends the page an `open`
    event with a grant token for the document, as for a launch handed over on Linux."""
    added: dict[str, Any] = {}

    class Delegate:  # pywebview's BrowserView.AppDelegate
        pass

    def category(cls: type) -> type:
        class Base:
            def __init_subclass__(cls_, **kwargs: Any) -> None:
                added.update({k: v for k, v in vars(cls_).items() if k.endswith("_")})
        return Base

    objc = types.SimpleNamespace(Category=category, typedSelector=lambda sig: lambda f: f)
    cocoa = types.ModuleType("webview.platforms.cocoa")
    cocoa.BrowserView = types.SimpleNamespace(AppDelegate=Delegate)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "objc", objc)
    monkeypatch.setitem(sys.modules, "webview.platforms.cocoa", cocoa)
    forwarded: list[list[str]] = []
    wkwebview.listen_for_opens(forwarded.append)
    doc = tmp_path / "My Note.wvdoc"
    doc.write_text("hello")
    handler = added["application_openURLs_"]
    handler(Delegate(), None, [NSURL(f"file://{str(doc).replace(' ', '%20')}"),
                               NSURL("wvdesk://note/7"), NSURL("https://example.com/")])
    assert forwarded == [[str(doc), "wvdesk://note/7", "https://example.com/"]]

    manifest = load_manifest(Path(__file__).parent / "desktop_app")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    app = App(manifest, headless=True)
    try:
        app.opened(forwarded[0])
        [(kind, detail)] = app._events._pending
    finally:
        app.close()
    assert kind == "open" and detail["urls"] == ["wvdesk://note/7"]
    assert detail["args"] == ["https://example.com/"]  # not one of the app's schemes
    [file] = detail["files"]
    assert (file["path"], file["name"], file["mode"]) == (str(doc), doc.name, "rw")  # editor
    assert app.launched_file(file["token"]) == (doc, "rw")


def test_second_windows_are_bounded_and_a_failed_one_leaves_no_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`wvwasi.window.open` through `App.window_call` (the window itself recorded: a real one is
    tests/test_desktop_window.py): at most MAX_WINDOWS open at once; options checked; a window
    that fails to open takes its bridge session with it."""
    from wvwasi.runtime.app import MAX_WINDOWS
    from wvwasi.runtime.bridge.specs import Refused

    class Windows:
        def __init__(self) -> None:
            self.opened: dict[str, tuple[str, str, int, int]] = {}
            self.fail = False

        def windows(self) -> list[str]:
            return list(self.opened)

        def open_window(self, name: str, url: str, *, title: str, width: int, height: int,
                        on_closed: Any) -> None:
            if self.fail:
                raise RuntimeError("no display")
            self.opened[name] = (url, title, width, height)

        def close(self) -> None:
            pass

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    app = App(load_manifest(Path(__file__).parent / "desktop_app"), headless=True)
    windows = Windows()
    app.window = windows  # type: ignore[assignment]
    app.bridge.start()
    try:
        def kind(*args: Any) -> str:
            try:
                app.window_call("", "open", list(args))
            except Refused as e:
                return e.kind
            return "ok"

        assert kind("second.html", {"width": 0}) == "invalid"
        assert kind("second.html", {"title": "x" * 1025}) == "invalid"
        assert kind("second.html", {"left": 5}) == "invalid"
        assert kind("second.html") == "invalid"  # options are not optional on the wire
        assert kind("https://example.com/", {}) == "permission"
        assert [kind("second.html", {}) for _ in range(MAX_WINDOWS + 1)] == \
            ["ok"] * MAX_WINDOWS + ["limit"]
        url, title, width, height = next(iter(windows.opened.values()))
        assert (title, width, height) == ("Desktop Test", 800, 600)  # [window] defaults
        assert "/__wvwasi/launch?token=" in url
        names = set(windows.opened)
        windows.opened.clear()
        windows.fail = True
        with pytest.raises(RuntimeError, match="no display"):
            app.window_call("", "open", ["second.html", {}])
        assert set(app.bridge._gate._sessions) == {"", *names}  # not the failed one's
    finally:
        app.close()

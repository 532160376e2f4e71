"""The Qt backend: Qt WebEngine (a bundled Chromium) through PyQt6 and qtpy."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from wvwasi.runtime.manifest import MenuItem
from wvwasi.runtime.window.tray import TrayIcon

GUI = "qt"
#: pywebview's debug mode opens a remote-debugging port that accepts any origin: not used.
LOCAL_INSPECTOR = False


def prepare() -> None:
    """Check that PyQt6 WebEngine loads, and set its environment before pywebview imports it.

    Raises ImportError naming what to install.
    """
    os.environ.setdefault("QT_API", "pyqt6")  # qtpy would otherwise take any Qt binding it finds
    if sys.platform.startswith("linux") and os.geteuid() == 0:
        # Chromium refuses to start its sandbox as root.
        flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "").split()
        if "--no-sandbox" not in flags:
            os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = " ".join([*flags, "--no-sandbox"])
    try:
        import qtpy  # noqa: F401
        from qtpy import QtWebEngineWidgets  # noqa: F401
    except Exception as e:  # qtpy raises its own errors for a missing binding
        raise ImportError(
            f"the Qt webview cannot load ({e}): install PyQt6 with Qt WebEngine "
            "(pip install 'wvwasi[qt]'); on Debian/Ubuntu it also needs apt install "
            "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libnss3"
        ) from None


def cancel_dialogs() -> None:
    """Nothing to do: closing the window ends an open QFileDialog's modal loop by itself."""


def listen_for_opens(forward: Callable[[list[str]], None]) -> None:
    """Nothing to do: documents and URLs arrive on the command line (a later launch's, through
    the single-instance channel)."""


#: Seconds `set_menu` waits for the GUI loop.
MENU_TIMEOUT = 10.0
_invoker: Any = None


def _on_gui(function: Callable[[], None]) -> None:
    """Run `function` on the Qt GUI thread (queued: also when called there, or before the
    loop runs). The first call must come from the main thread (AppWindow.run's)."""
    global _invoker
    if _invoker is None:
        from qtpy.QtCore import QObject, Qt, Signal

        class Invoker(QObject):
            call = Signal(object)

        _invoker = Invoker()  # lives on the main thread, where the GUI loop runs
        _invoker.call.connect(lambda f: f(), Qt.ConnectionType.QueuedConnection)
    _invoker.call.emit(function)


def start_menu(menus: list[Any]) -> bool:
    """False: pywebview builds the first menu bar. Sets up the GUI-thread calls of `set_menu`
    and `Tray` (this is called on the main thread before the loop runs)."""
    _on_gui(lambda: None)
    return False


def set_menu(menus: list[Any]) -> None:
    """Replace the window's menu bar with pywebview `menus` (from any thread but the GUI's)."""
    from webview.platforms.qt import BrowserView, create_menu

    done = threading.Event()
    failed: list[Exception] = []

    def apply() -> None:
        try:
            kept = BrowserView.global_menubar_other_objects  # pywebview's references
            for view in BrowserView.instances.values():
                view.menuBar().clear()
            for obj in kept:
                obj.deleteLater()
            kept.clear()
            for view in BrowserView.instances.values():
                create_menu(menus, view.menuBar())
        except Exception as e:  # reported to the caller
            failed.append(e)
        finally:
            done.set()

    _on_gui(apply)
    if not done.wait(MENU_TIMEOUT):
        raise TimeoutError(f"the Qt GUI loop did not take the menu within {MENU_TIMEOUT:g} s")
    if failed:
        raise failed[0]


class Tray(TrayIcon):
    """The app's tray icon (QSystemTrayIcon: StatusNotifierItem or XEmbed trays) and its
    menu, built on the Qt GUI thread."""

    status_icon: Any = None  # a QSystemTrayIcon once shown
    menu: Any = None  # its QMenu (None without menu items)

    def __post_init__(self) -> None:
        _on_gui(self._show)

    def _show(self) -> None:
        from qtpy.QtGui import QIcon
        from qtpy.QtWidgets import QApplication, QSystemTrayIcon

        image = (QIcon(str(self.icon_file)) if self.icon_file
                 else QIcon.fromTheme("application-x-executable",
                                      QApplication.style().standardIcon(
                                          QApplication.style().StandardPixmap.SP_ComputerIcon)))
        icon = QSystemTrayIcon(image)
        icon.setToolTip(self.title)

        def activated(reason: Any) -> None:
            if reason == QSystemTrayIcon.ActivationReason.Trigger:
                self._clicked(None)

        icon.activated.connect(activated)
        if self.items:
            self.menu = self._build(self.items)
            icon.setContextMenu(self.menu)
        icon.show()
        self.status_icon = icon

    def _build(self, items: tuple[MenuItem, ...], parent: Any = None) -> Any:
        from qtpy.QtWidgets import QMenu

        menu = QMenu(parent)
        for item in items:
            if item.separator:
                menu.addSeparator()
            elif item.id is None:
                sub = self._build(item.items, menu)
                sub.setTitle(item.label)
                menu.addMenu(sub)
            else:
                action = menu.addAction(item.label)
                action.triggered.connect(lambda _checked=False, ident=item.id:
                                         self._clicked(ident))
        return menu

    def hide(self) -> None:
        """Remove the icon (from any thread)."""
        _on_gui(lambda: self.status_icon.hide() if self.status_icon is not None else None)

"""The Qt backend: Qt WebEngine (a bundled Chromium) through PyQt6 and qtpy."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

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

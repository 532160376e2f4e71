"""The GTK backend: the system's WebKitGTK (WebKit2 4.1) through PyGObject. Linux default."""

from __future__ import annotations

import os
from collections.abc import Callable

GUI = "gtk"
#: pywebview's debug mode only adds "Inspect Element" to the page's context menu.
LOCAL_INSPECTOR = True


def prepare() -> None:
    """Check that GTK and WebKit2 load, and set their environment before pywebview imports them.

    Raises ImportError naming what to install.
    """
    # JavaScriptCore only exposes SharedArrayBuffer (with COOP/COEP) when this is set.
    os.environ.setdefault("JSC_useSharedArrayBuffer", "true")
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        gi.require_version("WebKit2", "4.1")
        from gi.repository import Gtk, WebKit2  # noqa: F401
    except (ImportError, ValueError) as e:
        raise ImportError(
            f"the GTK webview cannot load ({e}): install PyGObject (pip install 'wvwasi[gtk]') "
            "and the system's WebKitGTK (Debian/Ubuntu: apt install gir1.2-webkit2-4.1 "
            "gir1.2-gtk-3.0)"
        ) from None


def cancel_dialogs() -> None:
    """Cancel every open dialog (a folder picker), from any thread.

    A GTK dialog runs its own modal loop: while one is open, closing the window would never end
    the app. The picker then reports a cancel.
    """
    from gi.repository import GLib, Gtk

    def cancel() -> bool:
        for window in Gtk.Window.list_toplevels():
            if isinstance(window, Gtk.Dialog) and window.get_visible():
                window.response(Gtk.ResponseType.CANCEL)
        return False  # run once

    GLib.idle_add(cancel)


def listen_for_opens(forward: Callable[[list[str]], None]) -> None:
    """Nothing to do: documents and URLs arrive on the command line (a later launch's, through
    the single-instance channel)."""

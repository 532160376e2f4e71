"""The GTK backend: the system's WebKitGTK (WebKit2 4.1) through PyGObject. Linux default."""

from __future__ import annotations

import os
import threading
from typing import Any

GUI = "gtk"
#: pywebview's debug mode only adds "Inspect Element" to the page's context menu.
LOCAL_INSPECTOR = True
#: Seconds `set_menu` waits for the GUI loop.
MENU_TIMEOUT = 10.0


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


def set_menu(menus: list[Any]) -> None:
    """Replace the menu bar with pywebview `menus`, from any thread.

    pywebview builds its menu only at start, and a GTK window links its menu bar to the
    application's menu model when it is shown: so the model's items are replaced in place (the
    bar follows), or, if the app started without a menu, the new model is set and the windows
    are told to look again. The old menu's actions are dropped.
    """
    from gi.repository import Gio, GLib, Gtk
    from webview.platforms import gtk as platform

    done = threading.Event()
    failed: list[Exception] = []

    def apply() -> bool:
        try:
            app = platform._app
            for name in list(platform._app_actions):
                app.remove_action(name)
            platform._app_actions.clear()
            new = platform.create_menu(menus)
            current = app.get_menubar()
            if isinstance(current, Gio.Menu):
                current.remove_all()
                for i in range(new.get_n_items()):
                    current.append_item(Gio.MenuItem.new_from_model(new, i))
            else:
                app.set_menubar(new)
                Gtk.Settings.get_default().notify("gtk-shell-shows-menubar")
        except Exception as e:  # reported to the caller
            failed.append(e)
        finally:
            done.set()
        return False  # run once

    GLib.idle_add(apply)
    if not done.wait(MENU_TIMEOUT):
        raise TimeoutError(f"the GTK main loop did not take the menu within {MENU_TIMEOUT:g} s")
    if failed:
        raise failed[0]

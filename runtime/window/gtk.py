"""The GTK backend: the system's WebKitGTK (WebKit2 4.1) through PyGObject. Linux default."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

from wvwasi.runtime.manifest import MenuItem
from wvwasi.runtime.window.tray import TrayIcon

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


def listen_for_opens(forward: Callable[[list[str]], None]) -> None:
    """Nothing to do: documents and URLs arrive on the command line (a later launch's, through
    the single-instance channel)."""


def start_menu(menus: list[Any]) -> bool:
    """Show the app's first menu once the GUI loop runs (called before it starts); True if
    there is one."""
    if menus:
        set_menu(menus, wait=False)
    return bool(menus)


def set_menu(menus: list[Any], *, wait: bool = True) -> None:
    """Show pywebview `menus` as the menu bar, from any thread; `wait=False` only schedules it.

    wvwasi builds GTK menus itself, not with pywebview's builder, which names each action after
    its label and so aborts the process (a GLib error) on a label with "(" or ":". A GTK window
    links its menu bar to the application's menu model when it is shown: so a later menu replaces
    the model's items in place (the bar follows), while a first one is set as the model and the
    windows are told to look again. The old menu's actions are dropped.
    """
    from gi.repository import Gio, GLib, Gtk
    from webview.platforms import gtk as platform

    done = threading.Event()
    failed: list[Exception] = []

    def apply() -> bool:
        try:
            app = platform._app
            for name in _actions:
                app.remove_action(name)
            _actions.clear()
            new = _menu_model(menus)
            for name, function in _actions.items():
                action = Gio.SimpleAction.new(name, None)
                action.connect("activate", lambda _a, _p, f=function: threading.Thread(
                    target=f, name="wvwasi-menu", daemon=True).start())
                app.add_action(action)
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
    if not wait:
        return
    if not done.wait(MENU_TIMEOUT):
        raise TimeoutError(f"the GTK main loop did not take the menu within {MENU_TIMEOUT:g} s")
    if failed:
        raise failed[0]


#: The menu bar's actions by name (`wvwasi-menu-N`): what a click on each calls.
_actions: dict[str, Callable[[], None]] = {}


def _menu_model(menus: list[Any]) -> Any:
    """A Gio.Menu of pywebview `menus`, each action registered in `_actions`."""
    from gi.repository import Gio
    from webview.menu import Menu, MenuAction, MenuSeparator

    def submenu(items: list[Any]) -> Gio.Menu:
        menu, section = Gio.Menu(), Gio.Menu()
        for item in items:
            if isinstance(item, MenuSeparator):
                menu.append_section(None, section)
                section = Gio.Menu()
            elif isinstance(item, MenuAction):
                name = f"wvwasi-menu-{len(_actions)}"
                _actions[name] = item.function
                section.append(item.title, f"app.{name}")
            elif isinstance(item, Menu):
                section.append_submenu(item.title, submenu(item.items))
        menu.append_section(None, section)
        return menu

    bar = Gio.Menu()
    for top in menus:
        bar.append_submenu(top.title, submenu(top.items))
    return bar


class Tray(TrayIcon):
    """The app's tray icon (Gtk.StatusIcon: shown by XEmbed system trays) and its menu, built
    on the GTK main loop once it runs."""

    status_icon: Any = None  # a Gtk.StatusIcon once shown
    menu: Any = None  # its Gtk.Menu (None without menu items)

    def __post_init__(self) -> None:
        from gi.repository import GLib

        GLib.idle_add(self._show)

    def _show(self) -> bool:
        from gi.repository import Gtk

        with warnings.catch_warnings():  # Gtk.StatusIcon is deprecated (still in GTK 3)
            warnings.simplefilter("ignore", DeprecationWarning)
            icon = (Gtk.StatusIcon.new_from_file(str(self.icon_file)) if self.icon_file
                    else Gtk.StatusIcon.new_from_icon_name("application-x-executable"))
        icon.set_title(self.title)
        icon.set_tooltip_text(self.title)
        icon.connect("activate", lambda _icon: self._clicked(None))
        if self.items:
            self.menu = self._build(self.items)
            icon.connect("popup-menu", self._popup)
        icon.set_visible(True)
        self.status_icon = icon
        return False  # run once

    def _build(self, items: tuple[MenuItem, ...]) -> Any:
        from gi.repository import Gtk

        menu = Gtk.Menu()
        for item in items:
            if item.separator:
                menu.append(Gtk.SeparatorMenuItem())
                continue
            entry = Gtk.MenuItem(label=item.label)
            if item.id is None:
                entry.set_submenu(self._build(item.items))
            else:
                entry.connect("activate", lambda _entry, ident=item.id: self._clicked(ident))
            menu.append(entry)
        menu.show_all()
        return menu

    def _popup(self, icon: Any, button: int, when: int) -> None:
        from gi.repository import Gtk

        self.menu.popup(None, None, Gtk.StatusIcon.position_menu, icon, button, when)

    def hide(self) -> None:
        """Remove the icon (from any thread)."""
        from gi.repository import GLib

        def hide() -> bool:
            if self.status_icon is not None:
                self.status_icon.set_visible(False)
            return False

        GLib.idle_add(hide)

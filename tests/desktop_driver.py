"""Drive tests/desktop_app in a real window, for tests/test_desktop_window.py.

Usage: python tests/desktop_driver.py PROJECT BACKEND FIRST_DOC SECOND_DOC (DISPLAY and
XDG_RUNTIME_DIR set). Runs the app in this process as its first instance, launched with
FIRST_DOC; then launches it again (a separate process) with SECOND_DOC and with a URL, connects to
the single-instance channel without the key, clicks two menu items, and prints one JSON object:
the later launches' exit status and seconds, and what the page received; the tray icon is clicked
in the system tray the test runs (trayer); then the page opens a second window (and is refused
other pages), which calls `wvwasi.window` on itself and closes; last the page opens one more and
calls `wvwasi.window` (title, size, menu, close: both windows close) and `wvwasi.notify`
(DBUS_SESSION_BUS_ADDRESS set).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from driven_app import run_driven

from wvwasi.runtime import single_instance
from wvwasi.runtime.app import App
from wvwasi.runtime.launch import classify
from wvwasi.runtime.manifest import load_manifest

WAIT = 30.0


def wait_for(app: App, expression: str) -> Any:
    """The value of `expression` in the page once it is truthy."""
    deadline = time.monotonic() + WAIT
    while True:
        value = app.window.evaluate(expression, WAIT)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never showed {expression}")
        time.sleep(0.1)


def launch_again(project: Path, arg: str) -> dict[str, Any]:
    """A later launch with `arg`, as a desktop would start it: its exit status and seconds."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "wvwasi.runtime", str(project), arg],
                          capture_output=True, text=True, timeout=60)
    return {"status": proc.returncode, "seconds": round(time.perf_counter() - started, 2),
            "stderr": proc.stderr}


def click_menu(label: str) -> None:
    """Activate the GTK menu item `label` (what a click on it does)."""
    from gi.repository import GLib, Gtk

    def find(widget: Gtk.Widget) -> Gtk.MenuItem | None:
        if isinstance(widget, Gtk.MenuItem) and widget.get_label() == label:
            return widget
        children = list(widget.get_children()) if isinstance(widget, Gtk.Container) else []
        if isinstance(widget, Gtk.MenuItem) and widget.get_submenu() is not None:
            children.append(widget.get_submenu())
        for child in children:
            if (found := find(child)) is not None:
                return found
        return None

    def activate() -> bool:
        for window in Gtk.Window.list_toplevels():
            if (item := find(window)) is not None:
                item.activate()
                return False
        raise LookupError(f"no menu item {label!r}")

    GLib.idle_add(activate)


def menu_labels() -> list[str]:
    """The labels of every GTK menu item in the app's windows (the menu bar as built)."""
    import threading

    from gi.repository import GLib, Gtk

    labels: list[str] = []
    done = threading.Event()

    def walk(widget: Gtk.Widget) -> None:
        if isinstance(widget, Gtk.MenuItem):
            labels.append(widget.get_label())
            if widget.get_submenu() is not None:
                walk(widget.get_submenu())
        if isinstance(widget, Gtk.Container):
            for child in widget.get_children():
                walk(child)

    def collect() -> bool:
        for window in Gtk.Window.list_toplevels():
            walk(window)
        done.set()
        return False

    GLib.idle_add(collect)
    done.wait(WAIT)
    return labels


def on_gtk(function: Callable[[], Any]) -> Any:
    """`function()`'s value, called on the GTK main loop (GTK is not thread-safe)."""
    import threading

    from gi.repository import GLib

    answer: list[Any] = []
    done = threading.Event()

    def call() -> bool:
        try:
            answer.append(function())
        finally:
            done.set()
        return False

    GLib.idle_add(call)
    if not done.wait(WAIT):
        raise TimeoutError("the GTK main loop did not answer")
    return answer[0]


def tray_clicks(app: App, result: dict[str, Any]) -> None:
    """The tray icon, embedded in the test's system tray (trayer): a real click on it, a right
    click that pops its menu up, and its menu items."""
    tray = app.window.tray
    deadline = time.monotonic() + WAIT
    while not (tray.status_icon is not None and on_gtk(tray.status_icon.is_embedded)):
        if time.monotonic() > deadline:
            raise TimeoutError("the tray icon was never embedded in the system tray")
        time.sleep(0.2)

    def place() -> tuple[int, int]:
        _, _, area, _ = tray.status_icon.get_geometry()
        return area.x + area.width // 2, area.y + area.height // 2

    x, y = -1, -1  # the icon's centre, once two reads agree (the tray may still lay it out)
    while (x, y) != (point := on_gtk(place)):
        x, y = point
        time.sleep(0.2)
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"], check=True,
                   timeout=30)
    result["tray_icon_click"] = wait_for(app, "received.trays.length === 1 && received.trays[0]")
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "3"], check=True,
                   timeout=30)
    deadline = time.monotonic() + WAIT
    while not on_gtk(tray.menu.get_visible):
        if time.monotonic() > deadline:
            raise TimeoutError("a right click on the tray icon did not show its menu")
        time.sleep(0.1)
    result["tray_menu_labels"] = on_gtk(
        lambda: [child.get_label() for child in tray.menu.get_children()])
    on_gtk(tray.menu.popdown)
    click_menu("Tray hello")
    click_menu("Tray deep")
    result["tray_items"] = wait_for(app, "received.trays.length === 3 && received.trays.slice(1)")


def refused_without_key(app: App) -> bool:
    """Connect to the channel as a process without the key would: is it closed on us?"""
    primary = app.primary
    assert primary is not None
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        with single_instance.unix_address(primary.folder / f"{primary.name}.sock") as address:
            conn.connect(address)
        conn.recv(single_instance.NONCE)
        body = json.dumps({"argv": ["forged"], "cwd": "/"}).encode()
        conn.sendall(len(body).to_bytes(4, "big") + body + b"\0" * 32)
        return conn.recv(10) == b""


def outcome(app: App, expression: str, window: str = "") -> str:
    """'ok' if the Promise `expression` resolves in `window`'s page, else its error's kind."""
    return app.window.evaluate(f"({expression}).then(() => 'ok', (e) => e.kind || String(e))",
                               WAIT, window)


def second_window(app: App, result: dict[str, Any]) -> None:
    """`wvwasi.window.open`: refusals, then a second window with its own session and grants,
    whose calls act on itself, closing alone."""
    result["open_refused"] = [outcome(app, f"wvwasi.window.open({page!r})") for page in (
        "https://example.com/", "../wvwasi.toml", "missing.html", "app.js", "/second.html")]
    result["open_bad_size"] = outcome(app, "wvwasi.window.open('second.html', {width: 0})")
    result["opened"] = outcome(app, "wvwasi.window.open('second.html', "
                                    "{title: 'Second window', width: 500, height: 400})")
    (name,) = app.window.windows()
    wait_until = time.monotonic() + WAIT
    while app.window.evaluate("document.readyState === 'complete' && "
                              "typeof wvwasi === 'object' && location.pathname",
                              WAIT, name) != "/second.html":
        if time.monotonic() > wait_until:
            raise TimeoutError("the second window's page never loaded")
        time.sleep(0.1)
    result["second_width"] = app.window.evaluate("innerWidth", WAIT, name)
    result["second_retitled"] = outcome(app, "wvwasi.window.setTitle('Second retitled')",
                                        window=name)
    titles = subprocess.run(["xdotool", "search", "--name", "retitled|Desktop Test"],
                            capture_output=True, text=True, timeout=30)
    result["titles"] = sorted({subprocess.run(
        ["xdotool", "getwindowname", w], capture_output=True, text=True, timeout=30
    ).stdout.strip() for w in titles.stdout.split()})
    # grants are per page: the first page's document grant is unknown to the second page
    grant = app.window.evaluate("received.opens[0].files[0].grant.id", WAIT)
    use = f"new FileGrant({json.dumps(grant)}, 'x', 'rw').text()"
    result["grant_here"] = outcome(app, use)
    result["grant_there"] = outcome(app, use, name)
    app.window._target(name).run_js("wvwasi.window.close(); 0")  # no answer: it closes
    wait_until = time.monotonic() + WAIT
    while app.window.windows() and time.monotonic() < wait_until:
        time.sleep(0.1)
    result["second_closed"] = app.window.windows() == []
    result["main_after"] = app.window.evaluate("document.title", WAIT)
    # one more, left open: closing the main window (window_calls) closes it and ends the app
    result["reopened"] = outcome(app, "wvwasi.window.open('second.html')")


def window_calls(app: App, result: dict[str, Any]) -> None:
    """`wvwasi.window` from the page: title (read back from X), size, a refused call, close."""
    app.window.evaluate("wvwasi.window.setTitle('Retitled by the page')", WAIT)
    found = subprocess.run(["xdotool", "search", "--name", "Retitled by the page"],
                           capture_output=True, text=True, timeout=30)
    result["retitled"] = bool(found.stdout.split())
    app.window.evaluate("wvwasi.window.resize(640, 480)", WAIT)
    result["inner_width"] = wait_for(app, "innerWidth === 640 && innerWidth")
    result["bad_resize"] = app.window.evaluate(
        "wvwasi.window.resize(0, 5).then(() => 'resolved', (e) => e.kind)", WAIT)
    # wvwasi.notify: the test's notification server records it (test_desktop_window.py)
    result["notified"] = app.window.evaluate(
        "wvwasi.notify({title: 'From the page', body: 'Body ✓'}).then(() => 'shown', "
        "(e) => e.kind)", WAIT)
    result["bad_notify"] = app.window.evaluate(
        "wvwasi.notify({title: 5}).then(() => 'shown', (e) => e.name)", WAIT)
    # wvwasi.window.setMenu: the new menu replaces the old one, and its clicks reach the page
    app.window.evaluate("wvwasi.window.setMenu([{label: 'Edit', items: [{label: 'Page item', "
                        "id: 'page'}, {separator: true}, {label: 'Other (a:b)', id: 'other'}]}])",
                        WAIT)
    result["menu_after_set"] = menu_labels()
    click_menu("Page item")
    result["page_menu"] = wait_for(app, "received.menus.length === 3 && received.menus[2]")
    result["bad_menu"] = app.window.evaluate(
        "wvwasi.window.setMenu([{label: 'Edit', items: [{label: 'x', id: 'a b'}]}])"
        ".then(() => 'set', (e) => `${e.kind}: ${e.message}`)", WAIT)
    app.window._window.run_js("wvwasi.window.close(); 0")
    result["closed_by_page"] = app.window._close_requested.wait(WAIT)


def main() -> int:
    project, backend, first, second = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    manifest = load_manifest(project)
    primary = single_instance.acquire(manifest.app.identifier)
    result: dict[str, Any] = {}
    app = App(manifest, backend=backend, primary=primary,  # type: ignore[arg-type]
              launch=classify([first], os.getcwd(), manifest))

    def drive(app: App) -> None:
        try:
            if not app.window.loaded.wait(WAIT):
                raise TimeoutError("the page never loaded")
            result["first"] = wait_for(app, "received.opens.length === 1 && received.opens")
            result["second_launch"] = launch_again(Path(project), second)
            result["url_launch"] = launch_again(Path(project), "wvdesk://note/42?x=1")
            result["refused"] = refused_without_key(app)
            click_menu("Say hello")
            click_menu("Deep item (2: deep)")
            result["menus"] = wait_for(app, "received.menus.length === 2 && received.menus")
            tray_clicks(app, result)
            result["opens"] = wait_for(app, "received.opens.length === 3 && received.opens")
            result["second_text"] = app.window.evaluate("received.opens[1].files[0].grant.text()",
                                                        WAIT)
            second_window(app, result)
            window_calls(app, result)
        except Exception:
            result["error"] = traceback.format_exc()
        finally:
            app.window.close()

    return run_driven(app, drive, result)


if __name__ == "__main__":
    sys.exit(main())

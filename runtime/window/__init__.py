"""The app's native window: a pywebview window on the backend the manifest chooses.

One module per backend, each with the same contract: `GUI` (pywebview's name for it),
`LOCAL_INSPECTOR` (whether debug mode keeps the inspector in-process), `prepare()` (check the
backend can load and set its environment before pywebview imports it; ImportError naming what to
install), `cancel_dialogs()` (end open dialogs so closing the window ends the app) and
`listen_for_opens(forward)` (documents and URLs the OS hands the running app other than on a
command line: macOS's Apple events; elsewhere nothing); where the backend can replace its menu bar
while running (GTK, Qt), also `set_menu(menus)`, where it builds the first one itself (GTK),
`start_menu(menus)` (called on the main thread before the GUI loop; True if it builds them), and
where it can show a tray icon (GTK, Qt, WebView2), `Tray(title, icon, menu, on_click)` (a
`tray.TrayIcon`) with `hide()`. Linux: `gtk.py` (default) and `qt.py`, chosen by the manifest;
Windows: `webview2.py`; macOS: `wkwebview.py`. `AppWindow` is the same for all.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any, Literal

from wvwasi.runtime.manifest import AppInfo, Manifest, MenuItem, Window

if TYPE_CHECKING:
    from wvwasi.runtime.bridge.grants import FileRequest

Backend = Literal["gtk", "qt", "webview2", "wkwebview"]
#: The Linux backends a manifest (or `--webview`) chooses from.
BACKENDS: tuple[Backend, ...] = ("gtk", "qt")
#: The backend of each other OS (sys.platform).
NATIVE_BACKENDS: dict[str, Backend] = {"win32": "webview2", "darwin": "wkwebview"}
_CLOSE_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def backend_module(backend: Backend) -> ModuleType:
    """The module for `backend`, prepared (environment set, libraries checked).

    Raises ImportError naming what to install when the backend cannot load.
    """
    # Plain imports (not importlib) so that PyInstaller sees both modules.
    if backend == "gtk":
        from wvwasi.runtime.window import gtk as module
    elif backend == "qt":
        from wvwasi.runtime.window import qt as module
    elif backend == "webview2":
        from wvwasi.runtime.window import webview2 as module
    elif backend == "wkwebview":
        from wvwasi.runtime.window import wkwebview as module
    else:
        raise ValueError(f"unknown webview backend {backend!r} (expected one of {BACKENDS})")
    module.prepare()
    return module


def backend_for(manifest: Manifest) -> Backend | None:
    """The manifest's backend on Linux, WebView2 on Windows, WKWebView on macOS; None on
    another OS (pywebview picks)."""
    if sys.platform.startswith("linux"):
        return manifest.webview
    return NATIVE_BACKENDS.get(sys.platform)


#: The main window's name (a second window's is the name `open_window` was given).
MAIN = ""


class AppWindow:
    """The pywebview window showing the app's page, and the second windows pages open.

    `run()` owns the GUI loop and must be called on the main thread; every other method is
    for other threads (the bridge, the self-test, the dev watcher). `inspector` enables the web
    inspector (`wvwasi dev`) on backends where it stays in-process. The window calls take the
    window's name (MAIN or a second window's); closing the main window closes the others.
    """

    def __init__(
        self, spec: Window, backend: Backend | None, *, inspector: bool = False,
        on_menu: Callable[[str], None] | None = None,
        on_open: Callable[[list[str]], None] | None = None,
        app: AppInfo | None = None, on_tray: Callable[[str | None], None] | None = None,
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.inspector = inspector
        self.on_menu = on_menu  # called with a `[[window.menu]]` item's id when it is clicked
        # called (on its own thread) with the arguments of documents and URLs the OS asks the
        # running app to open (macOS: Apple events)
        self.on_open = on_open
        self.app = app  # `[app]`: its tray icon, if `tray`
        self.on_tray = on_tray  # called with a tray menu item's id, None for the icon itself
        self.tray: Any = None  # the backend's Tray while shown
        self._backend = backend_module(backend) if backend is not None else None
        self.loaded = threading.Event()  # set on each page load (after the pywebview bridge)
        self._window: Any = None
        self._close_requested = threading.Event()
        self._fullscreen: set[str] = set()  # the windows in full screen
        self._others: dict[str, Any] = {}  # second windows by name
        self._lock = threading.Lock()
        self._ended = threading.Event()  # the main window has closed

    def run(self, url: str, *, on_loaded: Callable[[], None] | None = None) -> None:
        """Show the window on `url` and run the GUI until the window is closed.

        `on_loaded` is called (on a pywebview thread) after each page load. SIGINT/SIGTERM
        close the window, so a terminal's Ctrl+C ends the app cleanly on either backend.
        """
        import webview

        webview.settings["ALLOW_FILE_URLS"] = False
        webview.settings["OPEN_DEVTOOLS_IN_DEBUG"] = False
        # The inspector only where it stays in-process (Qt's opens a port for any origin).
        debug = self.inspector and (self._backend is None or self._backend.LOCAL_INSPECTOR)
        if debug:
            os.environ.setdefault("PYWEBVIEW_LOG", "warning")  # debug=True would log everything
        self._window = webview.create_window(
            self.spec.title,
            url,
            width=self.spec.width,
            height=self.spec.height,
            resizable=self.spec.resizable,
            text_select=True,
        )

        def loaded() -> None:
            self.loaded.set()
            if on_loaded is not None:
                on_loaded()

        self._window.events.loaded += loaded
        self._window.events.closed += self._close_others
        gui = self._backend.GUI if self._backend is not None else None
        if self._backend is not None and self.on_open is not None:
            on_open = self.on_open
            self._backend.listen_for_opens(lambda args: threading.Thread(
                target=on_open, args=(args,), name="wvwasi-open", daemon=True).start())
        if self.app is not None and self.app.tray:
            self._show_tray(self.app)
        menus = [self._menu(m) for m in self.spec.menu]
        start_menu = getattr(self._backend, "start_menu", None)
        if start_menu is not None and start_menu(menus):  # built once the GUI loop runs
            menus = []
        with _CloseOnSignals(self.close):
            webview.start(gui=gui, debug=debug, private_mode=True, menu=menus)

    def _show_tray(self, app: AppInfo) -> None:
        """The tray icon with `[app] tray_menu`; a warning where the backend has none yet."""
        tray = getattr(self._backend, "Tray", None)
        if tray is None:
            print(f"warning: no tray icon: not supported on the {self.backend} webview yet",
                  file=sys.stderr)
            return
        self.tray = tray(app.name, app.icon, app.tray_menu, self._tray_clicked)

    def _tray_clicked(self, ident: str | None) -> None:
        if ident is None:  # the icon itself: the window comes forward
            self.bring_forward()
        if self.on_tray is not None:
            self.on_tray(ident)

    def _menu(self, item: MenuItem) -> Any:
        """pywebview's menu object for a `[[window.menu]]` entry."""
        from webview import menu

        if item.separator:
            return menu.MenuSeparator()
        if item.id is None:
            return menu.Menu(item.label, [self._menu(i) for i in item.items])
        ident = item.id

        def clicked() -> None:
            if self.on_menu is not None:
                self.on_menu(ident)

        return menu.MenuAction(item.label, clicked)

    def set_menu(self, menu: tuple[MenuItem, ...]) -> None:
        """Replace the menu bar (`wvwasi.window.setMenu`); its clicks call `on_menu` as the
        manifest's do. NotImplementedError where the backend cannot (GTK and Qt can so far)."""
        set_menu = getattr(self._backend, "set_menu", None)
        if set_menu is None:
            raise NotImplementedError(f"changing the menu is not supported on the {self.backend} "
                                      "webview yet")
        if self._window is not None:
            set_menu([self._menu(m) for m in menu])

    def dispatch(self, kind: str, detail: dict[str, Any]) -> bool:
        """Dispatch event `kind` with `detail` on the page's `wvwasi.app`; False if the page
        cannot take it now (not loaded, or no wvwasi.js)."""
        if self._window is None or not self.loaded.is_set():
            return False
        call = f"globalThis.__wvwasiDispatch?.({json.dumps(kind)}, {json.dumps(detail)}) === true"
        try:
            return self._window.run_js(call) is True
        except Exception:  # the window is closing
            return False

    def open_window(self, name: str, url: str, *, title: str, width: int, height: int,
                    on_closed: Callable[[], None]) -> None:
        """Open second window `name` on `url` (the main window must be running); `on_closed`
        is called once it has closed."""
        import webview

        if self._ended.is_set() or self._close_requested.is_set():
            raise RuntimeError("the app window is closing")
        window = webview.create_window(title, url, width=width, height=height,
                                       resizable=self.spec.resizable, text_select=True)
        if window is None:
            raise RuntimeError("the window could not be created")

        def closed() -> None:
            with self._lock:
                self._others.pop(name, None)
                self._fullscreen.discard(name)
            on_closed()

        window.events.closed += closed
        with self._lock:
            self._others[name] = window
        if self._ended.is_set():  # the main window closed meanwhile
            _destroy(window)

    def windows(self) -> list[str]:
        """The names of the second windows open now."""
        with self._lock:
            return list(self._others)

    def _target(self, window: str) -> Any:
        """The pywebview window named `window`; None once it is gone."""
        if window == MAIN:
            return self._window
        with self._lock:
            return self._others.get(window)

    def set_title(self, title: str, window: str = MAIN) -> None:
        if (target := self._target(window)) is not None:
            target.set_title(title)

    def resize(self, width: int, height: int, window: str = MAIN) -> None:
        if (target := self._target(window)) is not None:
            target.resize(width, height)

    def set_fullscreen(self, on: bool, window: str = MAIN) -> None:
        """Enter or leave full screen (pywebview only toggles: the state is kept here)."""
        target = self._target(window)
        if target is not None and on != (window in self._fullscreen):
            target.toggle_fullscreen()
            (self._fullscreen.add if on else self._fullscreen.discard)(window)

    def close_window(self, window: str) -> None:
        """Close `window`: a second one alone, the main one as `close()` does."""
        if window == MAIN:
            self.close()
        elif (target := self._target(window)) is not None:
            threading.Thread(target=_destroy, args=(target,), name="wvwasi-close",
                             daemon=True).start()

    def _close_others(self) -> None:
        """The main window closed: close the second windows too (the app then ends)."""
        with self._lock:
            self._ended.set()
            others = list(self._others.values())
        for window in others:
            _destroy(window)

    def bring_forward(self) -> None:
        """Show the window above the others (a later launch was handed to this one)."""
        if self._window is None:
            return
        with contextlib.suppress(Exception):  # not shown yet, or closing
            self._window.restore()
            self._window.show()
            self._window.on_top = True
            self._window.on_top = False

    def close(self) -> None:
        """Close the window (idempotent); `run()` then returns."""
        if self._close_requested.is_set():
            return
        self._close_requested.set()
        if self.tray is not None:
            self.tray.hide()
        if self._window is not None:
            if self._backend is not None:
                self._backend.cancel_dialogs()
            # destroy() waits for the window to be shown: never block the caller on that.
            threading.Thread(target=_destroy, args=(self._window,), name="wvwasi-close",
                             daemon=True).start()

    def pick_folder(self) -> Path | None:
        """Ask the user for a folder with the native dialog; None if they cancel.

        Blocks until the user answers: call it from a worker thread, never the GUI thread.
        """
        import webview

        if self._window is None:
            return None
        # Start in the home folder: without one GTK opens on "Recent", where typing a path and
        # pressing Enter does nothing.
        chosen = self._window.create_file_dialog(webview.FileDialog.FOLDER,
                                                 directory=str(Path.home()))
        return Path(chosen[0]) if chosen else None

    def pick_files(self, request: FileRequest) -> list[Path] | None:
        """Ask the user for files to open or a file to save with the native dialog; None if
        they cancel. Blocks until the user answers: never call it on the GUI thread."""
        import webview

        if self._window is None:
            return None
        types = ((f"Files ({' '.join('*.' + a for a in request.accept)})",)
                 if request.accept else ())
        if request.kind == "save":
            chosen = self._window.create_file_dialog(
                webview.FileDialog.SAVE, directory=str(Path.home()),
                save_filename=request.suggested_name, file_types=types)
        else:
            chosen = self._window.create_file_dialog(
                webview.FileDialog.OPEN, directory=str(Path.home()),
                allow_multiple=request.multiple, file_types=types)
        if not chosen:
            return None
        return [Path(c) for c in ([chosen] if isinstance(chosen, str) else chosen)]

    def evaluate(self, expression: str, timeout: float, window: str = MAIN) -> Any:
        """The JSON value of JavaScript `expression` in `window`'s page (a Promise is awaited).

        The page's CSP forbids `eval`, so this injects a script (as the webview's owner may) that
        stores the JSON result in the page, then polls for it. A rejected Promise or a thrown
        error raises RuntimeError with its text; no answer within `timeout` s: TimeoutError.
        """
        target = self._target(window)
        if target is None:
            raise LookupError(f"no window {window!r}")
        key = f"__wvwasi_eval_{uuid.uuid4().hex}"
        slot = f"globalThis[{json.dumps(key)}]"
        target.run_js(
            f"(async () => ({expression}))().then("
            f"(value) => {{ {slot} = JSON.stringify({{value: value ?? null}}); }},"
            f"(error) => {{ {slot} = JSON.stringify({{error: String(error?.stack || error)}}); }});"
            "0"
        )
        deadline = time.monotonic() + timeout
        while True:
            raw = target.run_js(f"{slot} ?? null")
            if isinstance(raw, str) and raw:
                target.run_js(f"delete {slot}; 0")
                answer = json.loads(raw)
                if "error" in answer:
                    raise RuntimeError(f"the page failed: {answer['error']}")
                return answer["value"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page did not answer within {timeout:g} s")
            time.sleep(0.05)


def _destroy(window: Any) -> None:
    """Destroy a pywebview window (it never appeared, or is already gone: nothing)."""
    with contextlib.suppress(Exception):
        window.destroy()


class _CloseOnSignals:
    """Within the block, SIGINT/SIGTERM call `close` (on a thread, never in the GUI loop).

    Qt's loop does not return to Python while idle, so a signal's Python handler could wait
    forever: the signal's wake-up byte is also watched from a thread.
    """

    def __init__(self, close: Callable[[], None]) -> None:
        self.close = close
        self._old: dict[int, Any] = {}
        self._old_fd = -1
        self._writer: socket.socket | None = None
        self._watcher: threading.Thread | None = None
        self._done = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=self.close, name="wvwasi-signal", daemon=True).start()

    def _watch(self, reader: socket.socket) -> None:
        with reader:
            woke = reader.recv(1)  # b"" once __exit__ closes the writer
        if woke and not self._done:
            self.close()

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        for sig in _CLOSE_SIGNALS:
            self._old[sig] = signal.signal(sig, self._handler)
        self._old_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._watcher = threading.Thread(
            target=self._watch, args=(reader,), name="wvwasi-signals", daemon=True
        )
        self._watcher.start()

    def __exit__(self, *exc: object) -> None:
        if self._writer is None or self._watcher is None:
            return
        self._done = True
        signal.set_wakeup_fd(self._old_fd)
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._writer.close()  # the watcher reads EOF and ends
        self._watcher.join(1)

"""The macOS backend: the system's WKWebView through pywebview's `cocoa` GUI (PyObjC). macOS
default; WebKit is part of macOS, so only PyObjC can be missing.

Finder and Launch Services hand documents and URLs to an app as Apple events, not arguments.
At launch, the frozen runtime's bootloader turns them into argv (PyInstaller's `argv_emulation`,
set in packager/freeze.py); while the app runs, `listen_for_opens` gives pywebview's application
delegate `application:openURLs:`, which AppKit calls for both `kAEOpenDocuments` (files) and
`kAEGetURL` (the app's URL schemes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

GUI = "cocoa"
#: WKWebView's Web Inspector runs in the app's own process.
LOCAL_INSPECTOR = True


def prepare() -> None:
    """Check that PyObjC's WebKit binding loads. Raises ImportError naming what to install."""
    try:
        import WebKit  # noqa: F401
    except ImportError as e:
        raise ImportError(f"the WKWebView webview cannot load ({e}): install PyObjC "
                          "(pip install pywebview, which depends on pyobjc-framework-WebKit "
                          "on macOS)") from None


def cancel_dialogs() -> None:
    """Nothing to do: an NSOpenPanel sheet ends with its window."""


def opened_urls(urls: Iterable[Any]) -> list[str]:
    """The command-line form of the NSURLs of an open Apple event: a file URL's path, any other
    URL as it is (runtime/launch.py then sorts them into files and urls)."""
    return [str(url.path()) if url.isFileURL() else str(url.absoluteString()) for url in urls]


def listen_for_opens(forward: Callable[[list[str]], None]) -> None:
    """Call `forward` with the arguments of each document or URL macOS asks the running app to
    open (on the GUI thread: `forward` must return at once). Call once, before the GUI starts."""
    import objc
    from webview.platforms.cocoa import BrowserView

    class _OpenURLs(objc.Category(BrowserView.AppDelegate)):  # type: ignore[misc]
        @objc.typedSelector(b"v@:@@")
        def application_openURLs_(self, app: Any, urls: Any) -> None:
            forward(opened_urls(urls))

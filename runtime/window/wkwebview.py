"""The macOS backend: the system's WKWebView through pywebview's `cocoa` GUI (PyObjC). macOS
default; WebKit is part of macOS, so only PyObjC can be missing."""

from __future__ import annotations

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

"""The Windows backend: Microsoft Edge WebView2 through pywebview's `edgechromium` GUI
(pythonnet). Windows default.

WebView2 is a system runtime, not part of the app: the installers provide it (`[bundle.windows]
webview2`, packager/formats/_webview2.py), and an app started without it shows a message box
saying what is missing and what to do — a windowed app has no console to print to.
"""

from __future__ import annotations

from collections.abc import Callable

GUI = "edgechromium"
#: WebView2's developer tools run in the app's own process.
LOCAL_INSPECTOR = True
#: The runtime's EdgeUpdate client key (its `pv` value is the installed version).
CLIENT_KEY = r"SOFTWARE\Microsoft\EdgeUpdate\Clients\{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}"
#: Where the runtime registers: (root, key), machine-wide (32-bit view, then native) or per user.
LOCATIONS = (("HKLM", CLIENT_KEY.replace("SOFTWARE", r"SOFTWARE\WOW6432Node")),
             ("HKLM", CLIENT_KEY), ("HKCU", CLIENT_KEY))
DOWNLOAD_PAGE = "https://developer.microsoft.com/microsoft-edge/webview2/"
MISSING = ("This app needs the Microsoft Edge WebView2 Runtime, which is not installed on this "
           "computer.\n\nInstall the Evergreen WebView2 Runtime from " + DOWNLOAD_PAGE +
           " (or run the app's installer again), then start the app again.")

#: Reads one registry string: (root name, key, value name) -> value or None.
RegistryReader = Callable[[str, str, str], str | None]


def installed_version(read: RegistryReader) -> str | None:
    """The installed WebView2 runtime's version, None if there is none (`0.0.0.0` = removed)."""
    for root, key in LOCATIONS:
        version = read(root, key, "pv")
        if version and version != "0.0.0.0":
            return version
    return None


def _read_registry(root: str, key: str, name: str) -> str | None:
    import winreg

    hive = winreg.HKEY_LOCAL_MACHINE if root == "HKLM" else winreg.HKEY_CURRENT_USER
    try:
        with winreg.OpenKey(hive, key) as handle:
            value, _ = winreg.QueryValueEx(handle, name)
    except OSError:
        return None
    return value if isinstance(value, str) else None


def _message_box(title: str, text: str) -> None:
    import ctypes

    mb_iconerror = 0x10
    ctypes.windll.user32.MessageBoxW(None, text, title, mb_iconerror)


def prepare(read: RegistryReader | None = None,
            show: Callable[[str, str], None] | None = None) -> None:
    """Check that WebView2 and pythonnet are there; if not, tell the user in a message box and
    raise ImportError (the app then exits with status 2 and the reason on stderr)."""
    if installed_version(read or _read_registry) is None:
        (show or _message_box)("WebView2 Runtime missing", MISSING)
        raise ImportError("the Microsoft Edge WebView2 Runtime is not installed: install it "
                          f"from {DOWNLOAD_PAGE}")
    if read is None:  # only on Windows: pythonnet is pywebview's bridge to WebView2
        try:
            import clr  # noqa: F401
        except Exception as e:
            (show or _message_box)("App damaged", f"This app cannot start ({e}). Reinstall it.")
            raise ImportError(f"the WebView2 webview cannot load ({e}): install pywebview with "
                              "pythonnet (pip install pywebview)") from None


def cancel_dialogs() -> None:
    """Nothing to do: closing the window ends an open WinForms folder dialog with it."""


def listen_for_opens(forward: Callable[[list[str]], None]) -> None:
    """Nothing to do: documents and URLs arrive on the command line (a later launch's, through
    the single-instance channel)."""

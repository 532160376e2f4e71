"""Open URL in a real pywebview GTK (WebKitGTK) window until killed: python webkit_open.py URL.

The page reports its results by itself (POST to its server); this only gives it a window.
JSC_useSharedArrayBuffer must be set in the environment before WebKit loads (the app's gtk
backend sets it the same way).
"""

import os
import sys

import webview

os.environ.setdefault("JSC_useSharedArrayBuffer", "true")
webview.create_window("wvwasi web engine", sys.argv[1], width=800, height=600)
webview.start(gui="gtk")

"""`python -m wvwasi.runtime [PROJECT] [--self-test] [--webview gtk|qt] [FILE | URL ...]`: run an
app folder (files and URLs: the page's `open` event, handed to the running instance if any)."""

from __future__ import annotations

import argparse

from wvwasi.runtime.app import run_app
from wvwasi.runtime.window import BACKENDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wvwasi.runtime", description=__doc__)
    parser.add_argument("project", nargs="?", default=".", help="folder with wvwasi.toml")
    parser.add_argument("--self-test", nargs="?", const=True, default=False,
                        choices=(True, "headless"), metavar="headless",
                        help="check every service from the page, print a JSON report, exit; "
                        "=headless: services and bridge only, no window")
    parser.add_argument("--webview", choices=BACKENDS, help="override [target.linux] webview")
    parser.add_argument("open", nargs="*", metavar="FILE | URL",
                        help="documents and links to open (the page's `open` event)")
    args = parser.parse_args(argv)
    return run_app(args.project, self_test=args.self_test, backend=args.webview,
                   open_args=args.open)


raise SystemExit(main())

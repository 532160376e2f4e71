"""`wvwasi info [--json]`: versions, webview backends, packaging tools and every cache."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import wvwasi
from wvwasi import __version__
from wvwasi.packager.formats import FORMATS, format_tools, host_arch
from wvwasi.packager.tools import have_tool, missing_tool_hint
from wvwasi.runtime.manifest import current_platform

#: Tools worth reporting besides the formats' own.
EXTRA_TOOLS = ("clang", "fakeroot", "osslsigncode", "msiinfo", "wine",
               "x86_64-w64-mingw32-gcc")  # the last two: Windows cross-freeze (wincross.py)
PACKAGES = ("wasmtime", "pywebview", "aiohttp", "pyinstaller", "PyGObject", "PyQt6",
            "PyQt6-WebEngine")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `info` subcommand."""
    p = sub.add_parser("info", help="show versions, webview backends, tools and the cache",
                       description=__doc__)
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("--include", action="store_true",
                   help="print only the folder of wvwasi's C headers (<wvwasi/net.h>), for "
                   "a service's compiler: clang -I \"$(wvwasi info --include)\"")
    p.set_defaults(run=run)


def include_dir() -> Path:
    """The folder holding wvwasi's headers for services (wvwasi/include/wvwasi/*.h)."""
    return Path(wvwasi.__file__).resolve().parent / "include"


def _version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def backends() -> dict[str, str]:
    """Each Linux webview backend -> "ok" or why it cannot load."""
    from wvwasi.runtime.window import BACKENDS, backend_module

    result = {}
    for name in BACKENDS:
        try:
            backend_module(name)
            result[name] = "ok"
        except ImportError as e:
            result[name] = str(e)
    return result


def gather() -> dict[str, Any]:
    from wvwasi.packager.caches import cache_dir, caches  # imports wasmtime: only when run

    tools = sorted({t for f in FORMATS for t in format_tools(f)} | set(EXTRA_TOOLS))
    found = caches()
    return {
        "wvwasi": __version__,
        "python": sys.version.split()[0],
        "include": str(include_dir()),
        "platform": f"{current_platform()}-{host_arch().name} ({platform.platform()})",
        "packages": {p: _version(p) for p in PACKAGES},
        "webview_backends": backends() if current_platform() == "linux" else {"native": "ok"},
        "tools": {t: "ok" if have_tool(t) else missing_tool_hint(t) for t in tools},
        "formats": {f: [t for t in format_tools(f) if not have_tool(t)] == []
                    for f in FORMATS},
        "cache": {"path": str(cache_dir()), "bytes": sum(c.bytes for c in found),
                  "caches": [{"kind": c.kind, "path": str(c.path), "bytes": c.bytes}
                             for c in found]},
    }


def run(args: argparse.Namespace) -> int:
    if args.include:
        print(include_dir())
        return 0
    info = gather()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"wvwasi {info['wvwasi']}  Python {info['python']}  {info['platform']}")
    print(f"C headers for services: {info['include']}  (clang -I)")
    print("packages: " + ", ".join(f"{k} {v or '-'}" for k, v in info["packages"].items()))
    print("webview backends:")
    for name, state in info["webview_backends"].items():
        print(f"  {name:8} {state}")
    print("packaging tools:")
    for name, state in info["tools"].items():
        print(f"  {name:14} {state}")
    print("formats available here: " + ", ".join(f for f, ok in info["formats"].items() if ok))
    print(f"cache: {info['cache']['path']} ({info['cache']['bytes'] / 1e6:.1f} MB in all)")
    for c in info["cache"]["caches"]:
        print(f"  {c['kind']:13} {c['bytes'] / 1e6:9.1f} MB  {c['path']}")
    return 0

"""The `wvwasi` command line: one subcommand per module in `commands/`.

Start-up is kept short: only the module of the command being run is imported, and each command
imports its heavy libraries (wasmtime, aiohttp, PyInstaller, rich...) when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from wvwasi import __version__

#: Subcommand (a module under wvwasi.packager.commands defining `register(sub)`) -> the example
#: its `--help` shows.
COMMANDS = {
    "check": "wvwasi check photo-tools",
    "exec": "echo Ada | wvwasi exec greet --project photo-tools",
    "serve": "wvwasi serve photo-tools --port 8000",
    "run": "wvwasi run photo-tools --self-test",
    "dev": "wvwasi dev photo-tools",
    "build": "wvwasi build photo-tools --format dir --format deb",
    "new": 'wvwasi new "Photo Tools" --template rust',
    "ci": "wvwasi ci github photo-tools",
    "signer": "wvwasi signer generate -w ~/.wvwasi/photo-tools.key",
    "info": "wvwasi info --json",
    "clean": "wvwasi clean",
}
#: Modules only a window backend needs -> the extra that installs them.
EXTRAS = {"gi": "gtk", "cairo": "gtk", "PyQt6": "qt", "qtpy": "qt"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: with every subcommand, or only `command`'s (a faster start)."""
    parser = argparse.ArgumentParser(
        prog="wvwasi", description="Desktop apps whose UI is a web page and whose logic is WASI "
        "WebAssembly services: create, check, run and package them.")
    parser.add_argument("--version", action="version", version=f"wvwasi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, example in COMMANDS.items():
        if command in (None, name):
            importlib.import_module(f"wvwasi.packager.commands.{name}").register(sub)
            sub.choices[name].epilog = f"example: {example}"
    return parser


def missing_module(name: str) -> str:
    """The one line that says what to install for a missing module `name`."""
    top = name.split(".")[0]
    if top in EXTRAS:
        return (f"error: this needs {top}, which is not installed: "
                f"pip install 'wvwasi[{EXTRAS[top]}]'")
    return (f"error: the Python package {top} is missing from this installation: "
            "pip install --force-reinstall wvwasi")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    # Everything after `--` is passed through untouched (e.g. `wvwasi exec x.wasm -- -v file`).
    cut = argv.index("--") if "--" in argv else len(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        args = build_parser(command).parse_args(argv[:cut])
        args.passthrough = argv[cut + 1 :]
        return int(args.run(args) or 0)
    except ModuleNotFoundError as e:
        if not e.name or e.name.split(".")[0] == "wvwasi":
            raise
        print(missing_module(e.name), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1

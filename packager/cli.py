"""The `wvwasi` command line: one subcommand per module in `commands/`."""

from __future__ import annotations

import argparse
import importlib
import sys

from wvwasi import __version__

#: Subcommand name -> module under wvwasi.packager.commands defining `register(sub)`.
COMMANDS = ("check", "exec", "serve", "run", "dev", "build", "new", "ci", "info", "clean")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="wvwasi", description=__doc__)
    parser.add_argument("--version", action="version", version=f"wvwasi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"wvwasi.packager.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    # Everything after `--` is passed through untouched (e.g. `wvwasi exec x.wasm -- -v file`).
    cut = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:cut])
    args.passthrough = argv[cut + 1 :]
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1

"""`python -m wvwasi` and the `wvwasi` command: the command-line tool (packager/cli.py)."""

import sys


def run() -> int:
    """The command line's entry point: a Ctrl+C at any point, also while it loads, exits with
    130 (stopping.INTERRUPTED) instead of a traceback."""
    try:
        from wvwasi.packager.cli import main

        return main()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(run())

"""`python -m wvwasi` runs the command-line tool."""

from wvwasi.packager.cli import main

raise SystemExit(main())

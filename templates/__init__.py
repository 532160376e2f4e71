"""Files `wvwasi new` and `wvwasi build` render: the project template, installer scripts, icons."""

from pathlib import Path

#: The folder holding the templates.
ROOT = Path(__file__).resolve().parent

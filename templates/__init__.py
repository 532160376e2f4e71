"""Files `wvwasi new` and `wvwasi build` render: the project template, installer scripts, icons."""

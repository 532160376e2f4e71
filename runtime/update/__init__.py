"""Signed auto-update of a built app (docs/update.md), on Tauri v2's public formats.

`minisign` reads keys and signatures and verifies files; `versions` compares versions;
`fetch` gets latest.json and downloads with bounds on size and time; `install` replaces the
installed app (atomically, after the new one passed its self-test); `updater` ties them
together for the app's `--update` and the page's `wvwasi.updater`.
"""

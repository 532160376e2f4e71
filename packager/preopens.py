"""Preopens a built app would not find: what `wvwasi check` reports and `wvwasi build` refuses.

A relative preopen `host` lies beneath `$RESOURCES` (runtime/paths.py): the project folder under
`wvwasi run`, the shipped resources (`bundle.resources`, packager/stage.py) in a built app.
Kept apart from stage.py so that `wvwasi check` loads no image or wasm library for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from wvwasi.runtime.manifest import Manifest
from wvwasi.runtime.paths import parse_host


def unshipped_preopens(manifest: Manifest) -> Iterator[str]:
    """A problem (one line, its key first) for each preopen `host` that is a relative path no
    `bundle.resources` entry ships."""
    preopens = [(f"services.{name}.preopens[{i}]", p) for name, s in manifest.services.items()
                for i, p in enumerate(s.preopens)]
    preopens += [(f"page.preopens[{i}]", p) for i, p in enumerate(manifest.page.preopens)]
    for key, preopen in preopens:
        variable, rest = parse_host(preopen.host)
        if variable is not None or Path(rest).is_absolute():
            continue
        path = (manifest.root / rest).resolve()
        if not any(path == r or path.is_relative_to(r) for r in manifest.bundle.resources):
            yield (f'{key}.host: "{preopen.host}" is relative, which a built app opens in its '
                   f'shipped resources ($RESOURCES): add "{rest}" (or a folder holding it) to '
                   "bundle.resources, or start it with a variable such as $APPDATA")

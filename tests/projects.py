"""Write small wvwasi project folders (wvwasi.toml + ui/ + services) for tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tomli_w

DEFAULT_HTML = "<!doctype html><title>test</title><p>test app</p>\n"


def write_project(
    root: Path,
    services: Mapping[str, Mapping[str, Any]],
    *,
    resolve_wasm: Callable[[str], Path],
    app: Mapping[str, Any] | None = None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    html: str = DEFAULT_HTML,
) -> Path:
    """Create a project in `root` and return it.

    `services` maps service names to their `[services.NAME]` keys. A `source` that names a C
    fixture (`"echo_lines"`) or is a Path is copied to `services/<name>.wasm`; any other string is
    written as is. `extra` adds or overrides top-level tables (`{"window": {...}}`).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "ui").mkdir(exist_ok=True)
    (root / "ui" / "index.html").write_text(html)
    (root / "services").mkdir(exist_ok=True)
    tables: dict[str, Any] = {
        "app": {"name": "Test App", "identifier": "dev.wvwasi.test", **(app or {})},
        "services": {},
    }
    for name, keys in services.items():
        keys = dict(keys)
        source = keys.get("source", name)
        if isinstance(source, Path) or ("/" not in source and not source.endswith(".wasm")):
            wasm = source if isinstance(source, Path) else resolve_wasm(source)
            shutil.copyfile(wasm, root / "services" / f"{name}.wasm")
            keys["source"] = f"services/{name}.wasm"
        tables["services"][name] = keys
    tables.update(extra or {})
    (root / "wvwasi.toml").write_text(tomli_w.dumps(tables))
    return root

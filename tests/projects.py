"""Write small wvwasi project folders (wvwasi.toml + ui/ + services) for tests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

DEFAULT_HTML = "<!doctype html><title>test</title><p>test app</p>\n"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v))  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def toml_dumps(data: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML for `{table: {key: value}}`; a table whose values are all tables becomes sub-tables
    (`[services.echo]`); nested values are written inline."""
    out: list[str] = []

    def table(name: str, body: Mapping[str, Any]) -> None:
        if body and all(isinstance(v, Mapping) for v in body.values()):
            for key, sub in body.items():
                table(f"{name}.{json.dumps(key)}", sub)
            return
        out.append(f"[{name}]")
        out.extend(f"{json.dumps(k)} = {_value(v)}" for k, v in body.items())
        out.append("")

    for name, body in data.items():
        table(name, body)
    return "\n".join(out)


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
    (root / "wvwasi.toml").write_text(toml_dumps(tables))
    return root

"""Hypothesis strategies for valid `wvwasi.toml` tables covering every key of the schema.

The tables are derived from runtime/manifest.py's dataclasses: a nested dataclass is a table, a
tuple of them an array of tables, `services` a table of tables, and every other field is a leaf
drawn from `LEAVES` (key path -> strategy of valid values; `*` stands for a service name, `[]`
for an array item). A field with a default may be left out, so defaults are drawn too.

Adding a key to the manifest: add its strategy to LEAVES. `manifest_tables()` raises
`MissingLeaf` naming a field without one, so test_manifest_roundtrip.py fails until the new key
is generated (and round-trips through dump_manifest()).

The tables are valid in a project made by hostile_project.make_hostile_project() (ui/index.html
and icon.png exist there).
"""

from __future__ import annotations

import itertools
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, fields, is_dataclass
from typing import Any

from hypothesis import strategies as st

from wvwasi.runtime import manifest as schema

#: Valid text for free-form strings: no NUL (no OS string can carry one), no lone surrogates
#: (not UTF-8).
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
               max_size=12)
nonempty = text.filter(lambda s: s.strip() != "")
#: A menu entry's label: no control characters (C0, DEL, C1; schema._LABEL_CONTROL).
label = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                max_size=12).filter(lambda s: s.strip() != "")
positive = st.one_of(st.integers(1, 64), st.integers(1, schema.MAX_INT))
size = st.one_of(st.integers(1, schema.MAX_SIZE), st.sampled_from(["1MiB", "64KiB", "10MB", "3B"]))
duration = st.one_of(
    st.floats(min_value=0.001, max_value=schema.MAX_DURATION), st.integers(1, 3600),
    st.sampled_from(["30s", "500ms", "2m", "1h"]),
)
#: Normalized guest paths; "/scratch" is left out (reserved when `scratch = true`).
guest = st.sampled_from(["/data", "/notes", "/a/b", "/with space", "/é"])
host = st.sampled_from(["$APPDATA/notes", "$RESOURCES", "$CACHE/x", "$DOCUMENTS", "/tmp/abs",
                        "rel/dir"])
relpath = st.sampled_from(["services/ok.wasm", "out/a.wasm", "src", ".", "deep/er/x.wasm"])
version = st.sampled_from(["0.1.0", "1.2", "2.0.0-beta.1", "3.4.5+build.7"])

LEAVES: Mapping[str, st.SearchStrategy[Any]] = {
    "app.name": nonempty,
    "app.identifier": st.sampled_from(["dev.wvwasi.fuzz", "com.example.App-2", "a.b.c.d"]),
    "app.version": version,
    "app.description": text,
    "app.publisher": text,
    "app.icon": st.just("icon.png"),
    "ui.dir": st.just("ui"),
    "ui.entry": st.just("index.html"),
    "window.title": text,
    "window.width": positive,
    "window.height": positive,
    "window.resizable": st.booleans(),
    "services.*.source": relpath,
    "services.*.kind": st.sampled_from(typing.get_args(schema.Kind)),
    "services.*.args": st.lists(text, max_size=3),
    "services.*.env": st.dictionaries(
        nonempty.filter(lambda k: "=" not in k), text, max_size=3),
    "services.*.ipc": st.sampled_from(typing.get_args(schema.Ipc)),
    "services.*.preopens[].guest": guest,
    "services.*.preopens[].host": host,
    "services.*.preopens[].mode": st.sampled_from(typing.get_args(schema.Mode)),
    "services.*.limits.memory": size,
    "services.*.limits.timeout": duration,
    "services.*.limits.instances": positive,
    "services.*.limits.files": positive,
    "services.*.limits.files_size": size,
    "services.*.limits.message": size,
    "services.*.build.command": nonempty,
    "services.*.build.workdir": relpath,
    "services.*.build.watch": st.lists(relpath, max_size=3),
    "services.*.user_grants": st.booleans(),
    "services.*.scratch": st.booleans(),
    "services.*.net.connect": st.lists(st.sampled_from(
        ["api.example.com:443", "*.example.org:443", "127.0.0.1:8080", "[::1]:80", "a:1"]),
        max_size=3),
    "services.*.net.ca": st.sampled_from(["$RESOURCES/ca.pem", "certs/ca.pem", "/etc/x.pem"]),
    "services.*.net.sockets": positive,
    "services.*.net.connect_timeout": duration,
    "services.*.net.read_timeout": duration,
    "bundle.formats": st.lists(st.sampled_from(schema.BUNDLE_FORMATS), max_size=4),
    "bundle.resources": st.lists(st.sampled_from(["ui", "data/x.txt", "icon.png"]), max_size=3),
    "bundle.wvwasi": version,
    "bundle.linux.depends": st.lists(st.sampled_from(["libc6", "gir1.2-webkit2-4.1"]),
                                     max_size=2),
    "bundle.linux.category": st.sampled_from(schema.DESKTOP_CATEGORIES),
    "bundle.windows.sign": st.booleans(),
    "bundle.windows.timestamp_url": st.sampled_from(["http://ts.example", "https://t.example/x"]),
    "bundle.windows.webview2": st.sampled_from(schema.WEBVIEW2_MODES),
    "bundle.windows.nsis_compression": st.sampled_from(schema.NSIS_COMPRESSIONS),
    "bundle.macos.signing_identity": text,
    "bundle.macos.notarize": st.booleans(),
    "bundle.macos.minimum_system_version": st.sampled_from(["10.13", "11", "12.6.1"]),
    "limits.instances": positive,
    "limits.instances_per_page": positive,
    "limits.sockets": positive,
    "page.preopens[].guest": guest,
    "page.preopens[].host": host,
    "page.preopens[].mode": st.sampled_from(typing.get_args(schema.Mode)),
    "update.endpoints": st.lists(st.sampled_from([
        "https://example.com/{{target}}/{{arch}}/{{current_version}}/latest.json",
        "http://127.0.0.1:8080/latest.json", "http://[::1]/l.json", "https://a.b/x?y=1"]),
        min_size=1, max_size=3),
    "update.pubkey": st.sampled_from([
        "untrusted comment: minisign public key 2A993F94898ED48B\n"
        "RWSL1I6JlD+ZKrdJafpwGBSCVBh7QSeZarZ8/m44PhR1hk0a583R/UJG\n",
        "RWSL1I6JlD+ZKrdJafpwGBSCVBh7QSeZarZ8/m44PhR1hk0a583R/UJG"]),
    "update.download_url": st.sampled_from(["https://github.com/o/r/releases/download/v{{version}}",
                                            "http://localhost:9/files"]),
    "update.windows.install_mode": st.sampled_from(schema.UPDATE_INSTALL_MODES),
    "app.url_schemes": st.lists(st.sampled_from(["notes", "x-app+v1", "my.app", "a-b"]),
                                unique=True, max_size=3),
    "app.single_instance": st.booleans(),
    "app.notifications": st.booleans(),
    "app.tray": st.booleans(),
    "app.tray_menu": st.deferred(lambda: _menu_entries(1)).map(
        lambda items: _numbered(items, itertools.count())),
    "window.menu": st.deferred(lambda: menus),
    "bundle.file_associations": st.deferred(lambda: associations),
}
#: Fields that are not keys of their table (see manifest._NOT_WRITTEN); `webview` is drawn
#: under [target.linux] by valid_manifests().
NOT_KEYS = {schema.Manifest: ("path", "root", "platform", "webview"), schema.Service: ("name",)}
SERVICE_NAMES = st.sampled_from(["svc", "wc", "a-b_c", "z9"])


def _menu_entries(depth: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    """The items of a menu list `depth` deep (the top-level menus are 1 deep): actions (their
    ids given by _numbered), separators and, above MENU_DEPTH, submenus."""
    options = [st.builds(lambda label: {"label": label, "id": ""}, label),
               st.just({"separator": True})]
    if depth < schema.MENU_DEPTH:
        options.append(st.builds(lambda label, items: {"label": label, "items": items},
                                 label, st.deferred(lambda: _menu_entries(depth + 1))))
    return st.lists(st.one_of(options), min_size=1, max_size=3)


def _numbered(items: list[dict[str, Any]], counter: itertools.count) -> list[dict[str, Any]]:
    """`items` with unique action ids (`[[window.menu]]` ids are unique in the whole menu)."""
    for item in items:
        if "id" in item:
            item["id"] = f"id-{next(counter)}"
        _numbered(item.get("items", []), counter)
    return items


menus = st.lists(st.builds(lambda label, items: {"label": label, "items": items}, label,
                           _menu_entries(2)), max_size=2).map(
    lambda top: _numbered(top, itertools.count()))
associations = st.lists(st.fixed_dictionaries(
    {"extensions": st.lists(st.sampled_from(["note", "txt2", "a_b", "x-y", "c+d"]), min_size=1,
                            max_size=2, unique=True),
     "mime_type": st.sampled_from(["application/x-note", "text/x-a", "image/vnd.x+y"]),
     "name": nonempty},
    optional={"role": st.sampled_from(typing.get_args(schema.Role)), "icon": st.just("icon.png")},
), max_size=3).filter(lambda found: len({e for a in found for e in a["extensions"]})
                      == sum(len(a["extensions"]) for a in found))  # each extension once


class MissingLeaf(LookupError):
    """A manifest field that LEAVES has no strategy for."""


def table(cls: type, key: str, used: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Tables for dataclass `cls` at key path `key`: fields without a default always present."""
    hints = typing.get_type_hints(cls)
    required, optional = {}, {}
    for f in fields(cls):
        if f.name in NOT_KEYS.get(cls, ()):
            continue
        strategy = _value(hints[f.name], f"{key}.{f.name}".lstrip("."), used)
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        (optional if has_default else required)[f.name] = strategy
    return st.fixed_dictionaries(required, optional=optional)


def _value(tp: Any, key: str, used: set[str]) -> st.SearchStrategy[Any]:
    if key in LEAVES:
        used.add(key)
        return LEAVES[key]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (tp,) = [a for a in args if a is not type(None)]
        return _value(tp, key, used)
    if is_dataclass(tp):
        return table(tp, key, used)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and is_dataclass(args[0]):
        return st.lists(table(args[0], f"{key}[]", used), max_size=3,
                        unique_by=lambda t: t.get("guest"))  # guest paths are unique
    if origin is Mapping and is_dataclass(args[1]):
        return st.dictionaries(SERVICE_NAMES, table(args[1], f"{key}.*", used), max_size=3)
    raise MissingLeaf(f"no strategy for manifest key {key!r}: add one to "
                      "tests/hostile/manifest_strategies.py LEAVES")


def manifest_tables(used: set[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Valid base tables (no [target]); `used` collects the LEAVES keys drawn from."""
    return table(schema.Manifest, "", set() if used is None else used).map(_tray_shown)


def _tray_shown(tables: dict[str, Any]) -> dict[str, Any]:
    """`tables` with `[app] tray = true` wherever it has a tray menu (which needs the icon)."""
    if tables.get("app", {}).get("tray_menu"):
        tables["app"]["tray"] = True
    return tables


@st.composite
def valid_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """Valid tables with [target.X] overlays: Linux's webview and sections merged over the base
    (a table merges into the base's, anything else replaces it)."""
    base = draw(manifest_tables())
    overlays = table(schema.Manifest, "", set()).map(
        lambda t: {k: t[k] for k in ("window", "limits", "page", "bundle") if k in t})
    target: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(schema.TARGETS), unique=True, max_size=4)):
        target[name] = draw(overlays)
    if draw(st.booleans()):
        target.setdefault("linux", {})["webview"] = draw(
            st.sampled_from(typing.get_args(schema.Webview)))
    return {**base, "target": target} if target else base

"""File associations and URL schemes as each OS registers them, as data the formats render.

`[[bundle.file_associations]]` and `[app] url_schemes` (docs/manifest.md) become:
- Linux: the .desktop entry's `MimeType=` (each association's type and `x-scheme-handler/S`,
  with `%U` on its `Exec` line) and a shared-mime-info XML, `/usr/share/mime/packages/
  <identifier>.xml`, declaring each type with its `*.ext` globs (what makes the system see a
  `.note` file as `application/x-note`; for a type the system already knows it adds the globs);
- Windows (NSIS, MSI; per user): `HKCU\\Software\\Classes\\<ProgID>` with its name, icon and
  `shell\\open\\command`, the ProgID under `.ext\\OpenWithProgids` (Windows 10+ lets no installer
  take the default: the user picks the app once in "Open with"), and for a scheme
  `HKCU\\Software\\Classes\\<scheme>` with `URL Protocol` and its command;
- macOS: Info.plist's `CFBundleDocumentTypes`, `UTExportedTypeDeclarations`, `CFBundleURLTypes`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from wvwasi.runtime.manifest import FileAssociation, Manifest

#: Placeholders in registry values: the installed executable and its icon file.
EXE = "\0exe\0"
ICON = "\0icon\0"
#: Longest ProgID Windows accepts.
PROGID_MAX = 39


def mime_types(manifest: Manifest) -> list[str]:
    """The .desktop entry's `MimeType=` items (empty: the app opens nothing)."""
    types = dict.fromkeys(a.mime_type for a in manifest.bundle.file_associations)
    return [*types, *(f"x-scheme-handler/{s}" for s in manifest.app.url_schemes)]


def mime_xml(manifest: Manifest) -> str | None:
    """The shared-mime-info package XML, or None without associations."""
    assoc = manifest.bundle.file_associations
    if not assoc:
        return None
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<mime-info xmlns="http://www.freedesktop.org/standards/shared-mime-info">']
    for a in assoc:
        lines.append(f"  <mime-type type={quoteattr(a.mime_type)}>")
        lines.append(f"    <comment>{escape(a.name)}</comment>")
        lines += [f'    <glob pattern="*.{ext}"/>' for ext in a.extensions]
        lines.append("  </mime-type>")
    lines.append("</mime-info>")
    return "\n".join(lines) + "\n"


def mime_icon_name(association: FileAssociation) -> str:
    """The freedesktop icon name of a MIME type (`application/x-note` -> `application-x-note`)."""
    return association.mime_type.replace("/", "-")


def prog_id(identifier: str, association: FileAssociation) -> str:
    """The association's Windows ProgID: `<identifier>.<first extension>`, letters, digits and
    dots only, at most PROGID_MAX characters (else shortened with a hash)."""
    text = re.sub(r"[^A-Za-z0-9.]", "", f"{identifier}.{association.extensions[0]}")
    if len(text) > PROGID_MAX:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        text = f"{text[:PROGID_MAX - 9].rstrip('.')}.{digest}"
    return text


@dataclass(frozen=True)
class RegValue:
    """One string value under HKCU (`name` "" is the key's default value); `value` may hold
    the EXE and ICON placeholders."""

    key: str
    name: str
    value: str


@dataclass(frozen=True)
class Registration:
    """What an installer writes for associations and schemes, and what uninstalling removes:
    `keys` (each with everything below it) and `values` (key, name) in keys shared with others."""

    values: tuple[RegValue, ...]
    keys: tuple[str, ...]
    shared_values: tuple[tuple[str, str], ...]


def windows_registration(manifest: Manifest) -> Registration:
    """The HKCU registry entries for the manifest's associations and URL schemes."""
    classes = "Software\\Classes"
    command = f'"{EXE}" "%1"'
    values: list[RegValue] = []
    keys: list[str] = []
    shared: list[tuple[str, str]] = []
    for a in manifest.bundle.file_associations:
        progid = prog_id(manifest.app.identifier, a)
        key = f"{classes}\\{progid}"
        keys.append(key)
        values += [
            RegValue(key, "", a.name),
            RegValue(f"{key}\\DefaultIcon", "", f'"{ICON}",0'),
            RegValue(f"{key}\\shell\\open\\command", "", command),
        ]
        for ext in a.extensions:
            values.append(RegValue(f"{classes}\\.{ext}\\OpenWithProgids", progid, ""))
            shared.append((f"{classes}\\.{ext}\\OpenWithProgids", progid))
    for scheme in manifest.app.url_schemes:
        key = f"{classes}\\{scheme}"
        keys.append(key)
        values += [
            RegValue(key, "", f"URL:{manifest.app.name}"),
            RegValue(key, "URL Protocol", ""),
            RegValue(f"{key}\\DefaultIcon", "", f'"{ICON}",0'),
            RegValue(f"{key}\\shell\\open\\command", "", command),
        ]
    return Registration(tuple(values), tuple(keys), tuple(shared))


def uti(identifier: str, association: FileAssociation) -> str:
    """The Uniform Type Identifier the app exports for an association."""
    ext = re.sub(r"[^A-Za-z0-9-]", "-", association.extensions[0])
    return f"{identifier}.{ext}"


def plist_entries(manifest: Manifest) -> dict[str, Any]:
    """The Info.plist keys for the associations and schemes (none if there are none)."""
    ident = manifest.app.identifier
    assoc = manifest.bundle.file_associations
    entries: dict[str, Any] = {}
    if assoc:
        entries["CFBundleDocumentTypes"] = [{
            "CFBundleTypeName": a.name,
            "CFBundleTypeRole": a.role.capitalize(),
            "LSHandlerRank": "Owner",
            "LSItemContentTypes": [uti(ident, a)],
        } for a in assoc]
        entries["UTExportedTypeDeclarations"] = [{
            "UTTypeIdentifier": uti(ident, a),
            "UTTypeDescription": a.name,
            "UTTypeConformsTo": ["public.data"],
            "UTTypeTagSpecification": {
                "public.filename-extension": list(a.extensions),
                "public.mime-type": [a.mime_type],
            },
        } for a in assoc]
    if manifest.app.url_schemes:
        entries["CFBundleURLTypes"] = [{
            "CFBundleURLName": ident,
            "CFBundleURLSchemes": list(manifest.app.url_schemes),
        }]
    return entries

"""`msi`: a per-user Windows Installer package compiled with wixl (msitools; works on Linux).

The UpgradeCode is a UUIDv5 of the app identifier, so every version of an app shares it and a
newer .msi replaces an older one (MajorUpgrade). Component GUIDs are UUIDv5s of the installed
path, stable across versions.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
import uuid
from pathlib import Path
from xml.sax.saxutils import quoteattr

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._sign import sign_windows
from wvwasi.packager.stage import StagedApp
from wvwasi.packager.tools import run
from wvwasi.templates import ROOT as TEMPLATES

TOOLS = ("wixl",)
#: Namespace of wvwasi's MSI UUIDs.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "msi.wvwasi.dev")


def upgrade_code(identifier: str) -> str:
    """The app's stable MSI UpgradeCode."""
    return str(uuid.uuid5(NAMESPACE, identifier)).upper()


def msi_version(version: str) -> str:
    """`1.2.3-beta+x` -> `1.2.3` (MSI ProductVersion is numeric)."""
    return ".".join(re.findall(r"\d+", version.split("-")[0].split("+")[0])[:3])


def _id(kind: str, rel: str) -> str:
    return f"{kind}_{hashlib.sha1(rel.encode()).hexdigest()[:20]}"


def _attr(text: str) -> str:
    return quoteattr(text)[1:-1]


def tree_xml(app: StagedApp, base: Path) -> tuple[str, list[str]]:
    """(nested Directory/Component/File elements, component ids) for the app folder; file
    sources are relative to `base` (wixl takes no absolute paths)."""
    ident = app.manifest.app.identifier
    components: list[str] = []

    def folder(path: Path, depth: int) -> list[str]:
        pad = "  " * depth
        lines: list[str] = []
        for entry in sorted(path.iterdir(), key=lambda p: p.name):
            rel = entry.relative_to(app.root).as_posix()
            if entry.is_dir():
                lines.append(f'{pad}<Directory Id="{_id("d", rel)}" Name={quoteattr(entry.name)}>')
                lines += folder(entry, depth + 1)
                lines.append(f"{pad}</Directory>")
                continue
            cid = _id("c", rel)
            guid = str(uuid.uuid5(NAMESPACE, f"{ident}/{rel}")).upper()
            components.append(cid)
            lines += [
                f'{pad}<Component Id="{cid}" Guid="{guid}">',
                f'{pad}  <File Id="{_id("f", rel)}" Name={quoteattr(entry.name)} '
                f'Source={quoteattr(os.path.relpath(entry, base))} KeyPath="yes" />',
                f"{pad}</Component>",
            ]
        return lines

    return "\n".join(folder(app.root, 6)), components


def wxs(app: StagedApp, base: Path) -> str:
    """The .wxs source text, to be compiled in folder `base`."""
    info = app.manifest.app
    tree, components = tree_xml(app, base)
    template = string.Template((TEMPLATES / "app.wxs").read_text(encoding="utf-8"))
    return template.substitute(
        name=_attr(info.name),
        version=msi_version(info.version),
        publisher=_attr(info.publisher or info.name),
        description=_attr(info.description or info.name),
        upgrade_code=upgrade_code(info.identifier),
        icon=_attr(os.path.relpath(app.payload / "icon.ico", base)),
        slug=_attr(app.slug),
        exe=_attr(app.executable.name),
        identifier=_attr(info.identifier),
        shortcut_guid=str(uuid.uuid5(NAMESPACE, f"{info.identifier}/shortcut")).upper(),
        tree=tree,
        component_refs="\n".join(f'      <ComponentRef Id="{c}" />' for c in components),
    )


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    opts.work.mkdir(parents=True, exist_ok=True)
    source = opts.work / f"{app.slug}.wxs"
    source.write_text(wxs(app, source.parent), encoding="utf-8")
    dest = out / app.artefact_name(".msi")
    run(["wixl", "--arch", app.arch.windows, "-o", dest, source], step="msi")
    sign_windows(app, dest, "msi")
    return [dest]

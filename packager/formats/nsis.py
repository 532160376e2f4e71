"""`nsis`: a per-user Windows setup.exe compiled with makensis (works on Linux too).

Installs into %LOCALAPPDATA%\\Programs\\<slug> without admin rights, adds a Start-menu shortcut,
an uninstaller and an Add/Remove Programs entry; installing over an older version first runs that
version's uninstaller, so no stale files stay behind. Every file is listed explicitly (install and
uninstall), from the staged Windows app folder.
"""

from __future__ import annotations

import re
import string
from pathlib import Path, PureWindowsPath

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._linux import installed_size_kib
from wvwasi.packager.formats._sign import sign_windows
from wvwasi.packager.stage import StagedApp, walk
from wvwasi.packager.tools import run
from wvwasi.templates import ROOT as TEMPLATES

TOOLS = ("makensis",)


def quote(text: str) -> str:
    """`text` for inside an NSIS double-quoted string."""
    return text.replace("$", "$$").replace('"', '$\\"').replace("\n", " ")


def numeric_version(version: str) -> str:
    """`1.2.3-beta` -> `1.2.3.0` (VIProductVersion needs four numbers)."""
    parts = [int(p) for p in re.findall(r"\d+", version.split("-")[0].split("+")[0])][:4]
    return ".".join(map(str, parts + [0] * (4 - len(parts))))


def file_lists(app: StagedApp) -> tuple[list[str], list[str]]:
    """(install lines, uninstall lines) naming every file of the app folder."""
    install: list[str] = ['  SetOutPath "$INSTDIR"']
    uninstall: list[str] = []
    dirs: list[str] = []
    current = ""
    for path in walk(app.root):
        rel = str(PureWindowsPath(path.relative_to(app.root)))
        if path.is_dir():
            dirs.append(rel)
            continue
        folder = str(PureWindowsPath(rel).parent)
        folder = "" if folder == "." else folder
        if folder != current:
            target = "$INSTDIR" + (f"\\{folder}" if folder else "")
            install.append(f'  SetOutPath "{quote(target)}"')
            current = folder
        install.append(f'  File "{quote(str(path))}"')
        uninstall.append(f'  Delete "$INSTDIR\\{quote(rel)}"')
    uninstall += [f'  RMDir "$INSTDIR\\{quote(d)}"' for d in reversed(dirs)]
    return install, uninstall


def script(app: StagedApp, outfile: Path, icon: Path) -> str:
    """The .nsi text."""
    info = app.manifest.app
    install, uninstall = file_lists(app)
    template = string.Template((TEMPLATES / "installer.nsi").read_text(encoding="utf-8"))
    return template.substitute(
        name=quote(info.name),
        version=quote(info.version),
        numeric_version=numeric_version(info.version),
        publisher=quote(info.publisher or info.name),
        exe=quote(app.executable.name),
        identifier=quote(info.identifier),
        slug=quote(app.slug),
        outfile=quote(str(outfile)),
        icon=quote(str(icon)),
        size_kib=installed_size_kib(app.root),
        install_files="\n".join(install),
        uninstall_files="\n".join(uninstall),
    )


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    dest = out / app.artefact_name("-setup.exe")
    nsi = opts.work / "installer.nsi"
    opts.work.mkdir(parents=True, exist_ok=True)
    nsi.write_text(script(app, dest, app.payload / "icon.ico"), encoding="utf-8")
    log = run(["makensis", "-V4", "-INPUTCHARSET", "UTF8", nsi], step="nsis")
    (opts.work / "makensis.log").write_text(log, encoding="utf-8")
    sign_windows(app, dest, "nsis")
    return [dest]

"""The `.app` layout PyInstaller's own BUNDLE makes (PyInstaller/building/osx.py), from a macOS
onedir runtime (`<exe>` + `_internal/`) and the payload.

  Contents/MacOS/<exe>        the executable, alone
  Contents/Frameworks/...     code: Mach-O files (dylibs, extension modules), .framework bundles
  Contents/Resources/...      data, and the app payload `app/`

The bootloader of an executable in Contents/MacOS looks for its files (`sys._MEIPASS`) in
Contents/Frameworks. As in PyInstaller: a folder holding only data goes to Resources and is
linked into Frameworks as a whole, one holding only code the other way round; in a folder holding
both, each file goes where it belongs and is linked into the other tree. codesign allows no dots
in folder names under Frameworks (except `.framework`): such folders are renamed with `__dot__`
and linked under their own name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

DOT_REPLACEMENT = "__dot__"
_MACHO_MAGIC = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe",
                b"\xca\xfe\xba\xbe")
_CODE, _DATA, _MIXED = "code", "data", "mixed"


def is_code(path: Path) -> bool:
    """A Mach-O file (thin or universal), or a library by its name."""
    if path.suffix in (".dylib", ".so"):
        return True
    with open(path, "rb") as f:
        return f.read(4) in _MACHO_MAGIC


def _kinds(internal: Path) -> dict[PurePosixPath, str]:
    """code / data / mixed for every folder under `internal` (by all files below it)."""
    kinds: dict[PurePosixPath, str] = {}
    for path in internal.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            continue
        rel = PurePosixPath(path.relative_to(internal).as_posix())
        kind = _CODE if any(p.suffix == ".framework" for p in rel.parents) or (
            path.is_file() and is_code(path)) else _DATA
        for parent in list(rel.parents)[:-1]:
            kinds[parent] = kind if kinds.get(parent, kind) == kind else _MIXED
    return kinds


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _sanitized(rel: PurePosixPath, kinds: dict[PurePosixPath, str]) -> PurePosixPath:
    """`rel` as it lies under Frameworks: dotted folders (not .framework) renamed."""
    parts = []
    for i, part in enumerate(rel.parts[:-1]):
        folder = PurePosixPath(*rel.parts[: i + 1])
        if "." in part and not part.endswith(".framework") and kinds.get(folder) != _DATA:
            part = part.replace(".", DOT_REPLACEMENT)
        parts.append(part)
    return PurePosixPath(*parts, rel.parts[-1])


def layout(onedir: Path, executable: str, contents: Path) -> None:
    """Lay out `onedir` (the staged app folder: executable, `_internal/`, `app/`) in
    `contents` (the bundle's Contents folder)."""
    macos, frameworks, resources = (contents / n for n in ("MacOS", "Frameworks", "Resources"))
    macos.mkdir(parents=True)
    shutil.copy2(onedir / executable, macos / executable)
    shutil.copytree(onedir / "app", resources / "app", symlinks=True)
    internal = onedir / "_internal"
    if not internal.is_dir():
        return
    kinds = _kinds(internal)
    dotted: set[PurePosixPath] = set()

    def place(rel: PurePosixPath) -> None:
        src = internal / rel
        kind = kinds.get(rel) if src.is_dir() and not src.is_symlink() else None
        if kind == _MIXED:
            for child in sorted(src.iterdir()):
                place(rel / child.name)
            return
        if src.is_symlink():  # in both trees, pointing to its neighbour in each (as PyInstaller)
            for link in (frameworks / _sanitized(rel, kinds), resources / rel):
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.readlink(src), link)
            return
        is_code_entry = kind == _CODE or (kind is None and is_code(src))
        in_frameworks = _sanitized(rel / "x", kinds).parent if kind else _sanitized(rel, kinds)
        home = frameworks / in_frameworks if is_code_entry else resources / rel
        other = resources / rel if is_code_entry else frameworks / in_frameworks
        home.parent.mkdir(parents=True, exist_ok=True)
        if kind is not None:
            shutil.copytree(src, home, symlinks=True)
            if kind == _CODE:
                _rename_dotted(home)
        else:
            shutil.copy2(src, home)
        _link(other, home)
        for folder in (rel, *rel.parents) if kind else rel.parents:
            if "." in folder.name and kinds.get(folder) != _DATA:
                dotted.add(folder)

    for child in sorted(internal.iterdir()):
        place(PurePosixPath(child.name))
    for folder in sorted(dotted):  # the original dotted names, as links to the renamed folders
        renamed = frameworks / _sanitized(folder / "x", kinds).parent
        if renamed.name != folder.name:
            (renamed.parent / folder.name).symlink_to(renamed.name)


def _rename_dotted(top: Path) -> None:
    """Rename dotted folders (not .framework) inside a code-only folder, linking the old name."""
    for path in sorted((p for p in top.rglob("*") if p.is_dir() and not p.is_symlink()),
                       key=lambda p: -len(p.parts)):
        if "." in path.name and not path.name.endswith(".framework") and \
                not any(q.suffix == ".framework" for q in path.parents):
            renamed = path.with_name(path.name.replace(".", DOT_REPLACEMENT))
            path.rename(renamed)
            path.symlink_to(renamed.name)


def nested_code(contents: Path) -> list[Path]:
    """Everything codesign must sign before the bundle, innermost first: Mach-O files and
    .framework bundles under Frameworks (not through links)."""
    found: list[Path] = []
    for path in (contents / "Frameworks").rglob("*"):
        if path.is_symlink() or any(p.suffix == ".framework" for p in path.parents):
            continue
        if path.is_dir():
            if path.suffix == ".framework":
                found.append(path)
        elif is_code(path):
            found.append(path)
    return sorted(found, key=lambda p: (-len(p.parts), str(p)))

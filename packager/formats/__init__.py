"""Output formats: one module per format, each with `build(app, out, opts) -> list[Path]`.

This module holds what the formats share: the registry (which OS each format is for, what it
needs), the one arch table, and `FormatOptions`.
"""

from __future__ import annotations

import importlib
import platform as _platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Literal

from wvwasi.runtime.manifest import BUNDLE_FORMATS, WEB

if TYPE_CHECKING:
    from wvwasi.packager.stage import StagedApp

Platform = Literal["linux", "windows", "macos", "web"]


@dataclass(frozen=True)
class Arch:
    """One CPU architecture as each packaging system spells it."""

    name: str  # wvwasi's own: x86_64, aarch64
    deb: str
    rpm: str
    windows: str  # wixl --arch, file names
    macos: str


#: The one arch table.
ARCHES: Mapping[str, Arch] = MappingProxyType({
    "x86_64": Arch("x86_64", deb="amd64", rpm="x86_64", windows="x64", macos="x86_64"),
    "aarch64": Arch("aarch64", deb="arm64", rpm="aarch64", windows="arm64", macos="arm64"),
})
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}


def host_arch() -> Arch:
    """This machine's architecture (ValueError for one wvwasi does not package)."""
    return arch(_platform.machine())


def arch(name: str) -> Arch:
    """The table entry for `name` (any common spelling)."""
    key = name.lower()
    key = _ARCH_ALIASES.get(key, key)
    if key not in ARCHES:
        raise ValueError(f"unsupported CPU architecture {name!r} (known: {', '.join(ARCHES)})")
    return ARCHES[key]


@dataclass(frozen=True)
class FormatInfo:
    """What the pipeline needs to know about a format before building it."""

    name: str
    module: str  # module name under wvwasi.packager.formats
    platform: Platform
    needs_onefile: bool = False  # packs the single-file runtime (Linux's onefile does not)
    after: tuple[str, ...] = ()  # formats whose artefacts this one consumes (dmg <- app)


#: Every format, in build order. The names are the manifest's (`[bundle] formats` accepts
#: BUNDLE_FORMATS; "web" is built on its own): the runtime owns them, since it cannot import
#: the packager, and this registry must name exactly those.
FORMATS: Mapping[str, FormatInfo] = MappingProxyType({
    f.name: f
    for f in (
        FormatInfo("dir", "dir", "linux"),
        FormatInfo("onefile", "onefile", "linux", needs_onefile=True),
        FormatInfo("tar.gz", "targz", "linux"),
        FormatInfo("deb", "deb", "linux"),
        FormatInfo("rpm", "rpm", "linux"),
        FormatInfo("appimage", "appimage", "linux"),
        FormatInfo("zip", "zip", "windows"),
        FormatInfo("nsis", "nsis", "windows"),
        FormatInfo("msi", "msi", "windows"),
        FormatInfo("app", "app", "macos"),
        FormatInfo("dmg", "dmg", "macos", after=("app",)),
        FormatInfo("web", "web", "web"),
    )
})
if set(FORMATS) != {*BUNDLE_FORMATS, WEB}:
    raise ImportError(f"packager formats {sorted(FORMATS)} differ from the manifest's "
                      f"{sorted({*BUNDLE_FORMATS, WEB})} (runtime/manifest.py BUNDLE_FORMATS)")

#: Formats built when neither `--format` nor `[bundle] formats` names any.
DEFAULT_FORMATS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "linux": ("dir", "tar.gz", "deb", "rpm"),
    "windows": ("zip", "nsis", "msi"),
    "macos": ("app", "dmg"),
})

#: `dir` and `onefile` exist on every OS (a Windows onedir is what `zip` packs).
_ANY_OS = ("dir", "onefile")


def formats_for(platform: Platform) -> tuple[str, ...]:
    """Every format that can be built for `platform`."""
    return tuple(n for n, f in FORMATS.items()
                 if f.platform == platform or (n in _ANY_OS and platform != "web"))


@dataclass(frozen=True)
class FormatOptions:
    """Settings every format gets besides the staged app and the output folder."""

    work: Path  # a scratch folder private to this format's build
    source_date_epoch: int | None = None  # fixed timestamps for reproducible archives
    #: artefacts of formats built earlier in this run (`dmg` gets the `.app`)
    built: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    log: Callable[[str], None] = lambda _msg: None


BuildFn = Callable[["StagedApp", Path, FormatOptions], "list[Path]"]


def builder(name: str) -> BuildFn:
    """The `build` function of format `name` (KeyError for an unknown format)."""
    return _module(name).build


def format_tools(name: str) -> tuple[str, ...]:
    """The outside tools format `name` runs (checked before a build starts)."""
    return tuple(_module(name).TOOLS)


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"wvwasi.packager.formats.{FORMATS[name].module}")

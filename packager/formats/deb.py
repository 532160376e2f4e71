"""`deb`: a Debian/Ubuntu package (written here, checked by dpkg-deb and dpkg in the tests).

Installs the app folder under /opt/<slug>, a /usr/bin/<slug> launcher, a .desktop entry and
hicolor icons; depends on the webview backend's system packages (not bundled) plus
`[bundle.linux] depends`. With SOURCE_DATE_EPOCH the .deb is byte-for-byte reproducible.

The archive is what `dpkg-deb --root-owner-group -Zxz --build` makes (ar: debian-binary,
control.tar.xz, data.tar.xz), but data.tar.xz is assembled from cached compressed parts
(formats/_parts.py): the runtime is xz-compressed once per runtime, not once per build.
"""

from __future__ import annotations

import time
from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._linux import (
    install_prefix,
    install_tree,
    installed_size_kib,
    package_depends,
    package_recommends,
)
from wvwasi.packager.formats._parts import (
    Entry,
    compress,
    folder_entries,
    tar_parts,
    tree_entries,
)
from wvwasi.packager.stage import StagedApp
from wvwasi.runtime.update.versions import package_version

TOOLS: tuple[str, ...] = ()
#: The frozen runtime's folder inside the app folder (its own compressed part).
RUNTIME_FOLDER = "_internal"


def control(app: StagedApp, installed_kib: int) -> str:
    """The DEBIAN/control file."""
    info = app.manifest.app
    summary = " ".join((info.description or info.name).split())
    fields = {
        "Package": app.slug,
        "Version": package_version(info.version),
        "Architecture": app.arch.deb,
        "Maintainer": " ".join((info.publisher or info.name).split()),
        "Installed-Size": str(installed_kib),
        "Depends": ", ".join(package_depends(app, "deb")),
        "Recommends": ", ".join(package_recommends(app, "deb")),
        "Section": "utils",
        "Priority": "optional",
        "Description": f"{summary}\n {info.name} ({info.identifier}), built with wvwasi.",
    }
    return "".join(f"{k}: {v}\n" for k, v in fields.items() if v)


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    extras = opts.work / "root"  # /usr/bin, /usr/share: the app folder comes from the stage
    install_tree(app, extras, opts.source_date_epoch)
    mtime = opts.source_date_epoch
    prefix = install_prefix(app).lstrip("/")
    entries = [
        *folder_entries(["./", "./" + str(Path(prefix).parent)]),
        *tree_entries(app.root, "./" + prefix, runtime=RUNTIME_FOLDER),
        *tree_entries(extras, ".", include_top=False),
    ]
    data = compress(tar_parts(entries, mtime, x86=app.arch.name == "x86_64"), "xz")
    control_text = control(app, installed_size_kib(app.root, extras)).encode()
    control_tar = tar_parts([*folder_entries(["./"]), Entry("./control", None,
                                                            content=control_text)], mtime)
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", compress(control_tar, "xz")),
               ("data.tar.xz", data)]
    dest = out / f"{app.slug}_{package_version(app.version)}_{app.arch.deb}.deb"
    dest.write_bytes(ar_archive(members, mtime if mtime is not None else int(time.time())))
    return [dest]


def ar_archive(members: list[tuple[str, bytes]], mtime: int) -> bytes:
    """An ar archive as dpkg-deb writes one (root-owned, mode 100644)."""
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name:<16}{mtime:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)

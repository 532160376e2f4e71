"""`deb`: a Debian/Ubuntu package built with `dpkg-deb --root-owner-group`.

Installs the app folder under /opt/<slug>, a /usr/bin/<slug> launcher, a .desktop entry and
hicolor icons; depends on the webview backend's system packages (not bundled) plus
`[bundle.linux] depends`. With SOURCE_DATE_EPOCH the .deb is byte-for-byte reproducible.
"""

from __future__ import annotations

from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._linux import (
    install_tree,
    installed_size_kib,
    package_depends,
)
from wvwasi.packager.stage import StagedApp, package_version
from wvwasi.packager.tools import run

TOOLS = ("dpkg-deb",)


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
        "Section": "utils",
        "Priority": "optional",
        "Description": f"{summary}\n {info.name} ({info.identifier}), built with wvwasi.",
    }
    return "".join(f"{k}: {v}\n" for k, v in fields.items())


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    root = opts.work / "root"
    install_tree(app, root, opts.source_date_epoch)
    debian = root / "DEBIAN"
    debian.mkdir(mode=0o755)
    (debian / "control").write_text(control(app, installed_size_kib(root)), encoding="utf-8")
    dest = out / f"{app.slug}_{package_version(app.version)}_{app.arch.deb}.deb"
    env = {"SOURCE_DATE_EPOCH": str(opts.source_date_epoch)} if opts.source_date_epoch else None
    # xz preset 7: a 16 MiB dictionary spans the runtime's largest library (smaller .deb)
    run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z7", "--build", root, dest], step="deb",
        env=env)
    return [dest]

"""`rpm`: a Fedora/openSUSE package built with rpmbuild, the same files as the .deb.

Reproducible with SOURCE_DATE_EPOCH: build time and file mtimes come from it, the build host is
fixed, and no build-id links or post-install scripts (strip, bytecompile) are added.
"""

from __future__ import annotations

import string
from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._linux import install_tree, package_depends
from wvwasi.packager.stage import StagedApp, package_version
from wvwasi.packager.tools import BuildError, run
from wvwasi.templates import ROOT as TEMPLATES

TOOLS = ("rpmbuild",)

#: rpm macros that make the build reproducible and leave the files untouched.
MACROS = {
    "_buildhost": "wvwasi",
    "use_source_date_epoch_as_buildtime": "1",
    "clamp_mtime_to_source_date_epoch": "1",
    "_source_date_epoch_from_changelog": "0",
    "_build_id_links": "none",
    "debug_package": "%{nil}",
    "__os_install_post": "%{nil}",
    "__arch_install_post": "%{nil}",
    # zstd level 3, all cores: rpmbuild compresses the whole payload on every build (it cannot
    # take pre-compressed parts), and xz -7 took 60-140 s here against 2-3 s (19 MB instead
    # of 15 MB). rpm reads zstd payloads since 4.14 (Fedora 28+, RHEL 8+, openSUSE Leap 15).
    "_binary_payload": "w3T0.zstdio",
    # package the laid-out tree where it is (no copy into a fresh buildroot)
    "__spec_install_pre": "%{___build_pre}",
}


def spec(app: StagedApp, tree: Path, files: list[str]) -> str:
    """The .spec text for the laid-out `tree`."""
    info = app.manifest.app

    def one_line(text: str) -> str:
        return " ".join(text.split()).replace("%", "%%")

    for path in files:
        if any(c.isspace() for c in path) or "%" in path:
            raise BuildError("rpm", f"cannot package a path with spaces or '%': {path!r}")
    return string.Template((TEMPLATES / "rpm.spec").read_text(encoding="utf-8")).substitute(
        name=app.slug,
        version=package_version(info.version),
        summary=one_line(info.description or info.name),
        license="LicenseRef-Proprietary",
        arch=app.arch.rpm,
        requires="".join(f"Requires:       {d}\n" for d in package_depends(app, "rpm")).rstrip(),
        description=one_line(f"{info.name} ({info.identifier}), built with wvwasi. "
                             f"{info.description}"),
        tree=tree,
        files="\n".join(files),
    )


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    tree = opts.work / "root"
    files = install_tree(app, tree, opts.source_date_epoch, link=True)
    top = opts.work / "rpmbuild"
    spec_file = opts.work / f"{app.slug}.spec"
    spec_file.write_text(spec(app, tree, files), encoding="utf-8")
    defines = {**MACROS, "_topdir": str(top), "_rpmdir": str(opts.work / "rpms"),
               "buildroot": str(tree),
               "_build_name_fmt": "%%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm"}
    args = ["rpmbuild", "-bb", "--nodeps", "--target", app.arch.rpm]
    for key, value in defines.items():
        args += ["--define", f"{key} {value}"]
    env = {"SOURCE_DATE_EPOCH": str(opts.source_date_epoch)} if opts.source_date_epoch else None
    run([*args, spec_file], step="rpm", env=env)
    built = sorted((opts.work / "rpms").glob("*.rpm"))
    if len(built) != 1:
        raise BuildError("rpm", f"rpmbuild made {len(built)} packages, expected one")
    dest = out / built[0].name
    built[0].replace(dest)
    return [dest]

"""`rpm`: a Fedora/openSUSE package, the same files as the .deb, written here (no rpmbuild).

The .rpm (formats/_rpmfile.py) holds a cpio payload in one xz stream assembled from cached
compressed parts (formats/_parts.py), like the .deb's data.tar.xz: the runtime and big
artefacts are compressed once, not once per build, and with the deb's parts shared. xz because
every rpm reads it (rpm 4.7+: RHEL 6+, every Fedora, openSUSE), unlike zstd (rpm 4.14+). With
SOURCE_DATE_EPOCH the .rpm is byte-for-byte reproducible (build time and file mtimes come
from it, the build host is fixed).
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.formats._linux import (
    install_prefix,
    install_tree,
    package_depends,
    package_recommends,
)
from wvwasi.packager.formats._parts import (
    XZ_PRESET,
    Member,
    Part,
    compress,
    cut_parts,
    member,
    tree_entries,
)
from wvwasi.packager.formats._rpmfile import (
    BIN,
    CPIO_TRAILER,
    I18NSTRING,
    IMMUTABLE,
    INT16,
    INT32,
    STRING,
    STRING_ARRAY,
    Value,
    cpio_header,
    header,
    lead,
    padded_signature,
)
from wvwasi.packager.stage import StagedApp
from wvwasi.packager.tools import BuildError
from wvwasi.runtime.update.versions import package_version

TOOLS: tuple[str, ...] = ()
RUNTIME_FOLDER = "_internal"
BUILD_HOST = "wvwasi"
RELEASE = "1"
_SHA256 = 8  # rpm's PGPHASHALGO_SHA256
#: rpmlib() features a package of this layout needs (what rpmbuild adds), each `<=` a version
_RPMLIB = {
    "CompressedFileNames": "3.0.4-1",
    "FileDigests": "4.6.0-1",
    "PayloadFilesHavePrefix": "4.0-1",
    "PayloadIsXz": "5.2-1",
}
_LESS_EQUAL_RPMLIB = 0x2 | 0x8 | (1 << 24)  # RPMSENSE_LESS | RPMSENSE_EQUAL | RPMSENSE_RPMLIB
_EQUAL = 0x8
_ISA = {"x86_64": "x86-64", "aarch64": "aarch-64"}
_U32 = 1 << 32


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    extras = opts.work / "root"
    mtime = opts.source_date_epoch
    owned = set(install_tree(app, extras, mtime)) - {install_prefix(app)}
    entries = [*tree_entries(app.root, "." + install_prefix(app), runtime=RUNTIME_FOLDER),
               *(e for e in tree_entries(extras, ".", include_top=False) if e.name[1:] in owned)]
    members = sorted((member(e, mtime) for e in entries), key=lambda m: m.name.encode())
    parts = cpio_parts(members, x86=app.arch.name == "x86_64")
    payload = compress(parts, "xz")
    archive_size = sum(len(p.data) for p in parts)
    built = mtime if mtime is not None else int(time.time())
    head = header(package_tags(app, members, built, payload), IMMUTABLE)
    if archive_size >= _U32 or len(head) + len(payload) >= _U32:
        raise BuildError("rpm", "packages of 4 GiB or more are not supported")
    md5 = hashlib.md5(head, usedforsecurity=False)
    md5.update(payload)
    signature = padded_signature({
        269: (STRING, hashlib.sha1(head).hexdigest()),  # header SHA-1 (what older rpm checks)
        273: (STRING, hashlib.sha256(head).hexdigest()),  # header SHA-256
        1000: (INT32, [len(head) + len(payload)]),  # size of header + payload
        1004: (BIN, md5.digest()),  # MD5 of header + payload (legacy, still checked by -K)
        1007: (INT32, [archive_size]),  # uncompressed payload size
    })
    name = f"{app.slug}-{package_version(app.version)}-{RELEASE}"
    dest = out / f"{name}.{app.arch.rpm}.rpm"
    with open(dest, "wb") as f:
        for chunk in (lead(name, app.arch.rpm), signature, head, payload):
            f.write(chunk)
    return [dest]


def cpio_parts(members: list[Member], *, x86: bool = False) -> list[Part]:
    """The payload: a newc cpio archive of `members` (inodes numbered in order), in parts."""
    inode = {m.name: i for i, m in enumerate(members, 1)}

    def encode(m: Member) -> tuple[bytes, bytes]:
        body = m.linkname.encode() if m.linkname else m.data
        return cpio_header(m.name, m.mode, m.mtime, len(body), inode[m.name]), body

    return cut_parts(members, encode, 4, CPIO_TRAILER, x86=x86)


def package_tags(app: StagedApp, members: list[Member], built: int,
                 payload: bytes) -> dict[int, tuple[int, Value]]:
    """The header's tags: the package, its relations, its files and the payload's digest."""
    info = app.manifest.app
    version = package_version(info.version)

    def one_line(text: str) -> str:
        return " ".join(text.split())

    for m in members:
        if len(m.data) >= _U32:
            raise BuildError("rpm", f"{m.name}: files of 4 GiB or more are not supported")
    paths = [m.name[1:] for m in members]  # "./opt/x" -> "/opt/x"
    dirnames = sorted({posixpath.dirname(p) + "/" for p in paths})
    dir_index = {d: i for i, d in enumerate(dirnames)}
    sizes = [0 if m.is_dir else len(m.linkname.encode()) if m.linkname else len(m.data)
             for m in members]
    requires = sorted([(d, 0, "") for d in package_depends(app, "rpm")]
                      + [(f"rpmlib({k})", _LESS_EQUAL_RPMLIB, v) for k, v in _RPMLIB.items()])
    full = f"{version}-{RELEASE}"
    provides = [app.slug, f"{app.slug}({_ISA.get(app.arch.rpm, app.arch.rpm)})"]
    count = len(members)
    recommends = package_recommends(app, "rpm")
    weak = {
        5046: (STRING_ARRAY, list(recommends)),  # Recommends: names
        5047: (STRING_ARRAY, [""] * len(recommends)),  # versions (any)
        5048: (INT32, [0] * len(recommends)),  # flags
    } if recommends else {}
    return {
        100: (STRING_ARRAY, ["C"]),  # the i18n table: one locale
        1000: (STRING, app.slug),  # name
        1001: (STRING, version),
        1002: (STRING, RELEASE),
        1004: (I18NSTRING, one_line(info.description or info.name)),  # summary
        1005: (I18NSTRING, one_line(f"{info.name} ({info.identifier}), built with wvwasi. "
                                    f"{info.description}")),  # description
        1006: (INT32, [built]),  # build time
        1007: (STRING, BUILD_HOST),
        1009: (INT32, [sum(sizes)]),  # installed size
        1014: (STRING, "LicenseRef-Proprietary"),
        1016: (I18NSTRING, "Unspecified"),  # group
        1021: (STRING, "linux"),
        1022: (STRING, app.arch.rpm),
        1028: (INT32, sizes),  # file sizes
        1030: (INT16, [m.mode for m in members]),
        1033: (INT16, [0] * count),  # rdevs
        1034: (INT32, [m.mtime for m in members]),
        1035: (STRING_ARRAY, [hashlib.sha256(m.data).hexdigest() if m.is_file else ""
                              for m in members]),  # file digests
        1036: (STRING_ARRAY, [m.linkname for m in members]),  # symlink targets
        1037: (INT32, [0] * count),  # file flags (none: not %config, %doc...)
        1039: (STRING_ARRAY, ["root"] * count),
        1040: (STRING_ARRAY, ["root"] * count),
        1044: (STRING, f"{app.slug}-{full}.src.rpm"),  # its presence marks a binary package
        1045: (INT32, [0xFFFFFFFF] * count),  # verify everything
        1047: (STRING_ARRAY, provides),
        1048: (INT32, [flags for _n, flags, _v in requires]),
        1049: (STRING_ARRAY, [n for n, _f, _v in requires]),
        1050: (STRING_ARRAY, [v for _n, _f, v in requires]),
        1095: (INT32, [1] * count),  # devices
        1096: (INT32, list(range(1, count + 1))),  # inodes (no hard links)
        1097: (STRING_ARRAY, [""] * count),  # languages
        1112: (INT32, [_EQUAL] * len(provides)),
        1113: (STRING_ARRAY, [full] * len(provides)),
        1116: (INT32, [dir_index[posixpath.dirname(p) + "/"] for p in paths]),
        1117: (STRING_ARRAY, [posixpath.basename(p) for p in paths]),
        1118: (STRING_ARRAY, dirnames),
        1124: (STRING, "cpio"),  # payload format
        1125: (STRING, "xz"),  # payload compressor
        1126: (STRING, str(XZ_PRESET)),
        5011: (INT32, [_SHA256]),  # file digest algorithm
        5062: (STRING, "utf-8"),  # encoding of the strings
        5092: (STRING_ARRAY, [hashlib.sha256(payload).hexdigest()]),  # payload digest
        5093: (INT32, [_SHA256]),
        **weak,
    }


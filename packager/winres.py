"""The app's own icon and version resource on its Windows executable.

The frozen runtime is the same for every app (frozen once, cached, with PyInstaller's default
icon), so PyInstaller's `icon=`/`version=` cannot give each app its own. Instead each app's copy
of the runtime executable gets its resources rewritten at staging: RT_ICON/RT_GROUP_ICON from the
app's `.ico` and a VS_VERSIONINFO from `[app]` (name, version, publisher, description); other
resources (the runtime's manifest) are kept. LIEF rebuilds the resource section on any OS.

PyInstaller's bootloader finds its appended archive by searching backwards from the end of the
file for its cookie and reads the archive relative to it, so the archive survives the section
growing as long as it stays, byte for byte, at the end: LIEF writes the overlay back after the
new section. This runs before the onefile payload is appended and before signing.
"""

from __future__ import annotations

import array
import re
import struct
import sys
from pathlib import Path

from wvwasi.packager.tools import BuildError
from wvwasi.runtime.manifest import AppInfo

RT_ICON, RT_GROUP_ICON, RT_VERSION = 3, 14, 16
#: Language of the resources written: en-US, with the Unicode code page in the string table.
LANGUAGE, CODEPAGE = 0x0409, 1200
_CHECKSUM_OFFSET = 0x40  # of OptionalHeader.CheckSum, from the PE signature


def numeric_version(version: str) -> str:
    """`1.2.3-beta` -> `1.2.3.0` (Windows file versions are four 16-bit numbers)."""
    parts = [min(int(p), 0xFFFF)
             for p in re.findall(r"\d+", version.split("-")[0].split("+")[0])][:4]
    return ".".join(map(str, parts + [0] * (4 - len(parts))))


def version_strings(info: AppInfo, exe_name: str) -> dict[str, str]:
    """The StringFileInfo of the app's executable."""
    return {
        "CompanyName": info.publisher or info.name,
        "FileDescription": info.description or info.name,
        "FileVersion": info.version,
        "InternalName": Path(exe_name).stem,
        "OriginalFilename": exe_name,
        "ProductName": info.name,
        "ProductVersion": info.version,
    }


def _block(key: str, value: bytes, *, children: bytes = b"", text: bool = False) -> bytes:
    """One VS_VERSIONINFO node: wLength, wValueLength, wType, szKey, padding, Value, children
    (each 32-bit aligned). A text value's length counts UTF-16 units, a binary one bytes."""
    head = struct.calcsize("<3H") + len(key.encode("utf-16-le")) + 2
    body = key.encode("utf-16-le") + b"\0\0" + b"\0" * (-head % 4) + value
    if children:
        body += b"\0" * (-(6 + len(body)) % 4) + children
    value_length = len(value) // 2 if text else len(value)
    node = struct.pack("<3H", 6 + len(body), value_length, 1 if text else 0) + body
    return node + b"\0" * (-len(node) % 4)


def version_resource(strings: dict[str, str], version: str) -> bytes:
    """A VS_VERSIONINFO resource: VS_FIXEDFILEINFO with `version` (numbers) and `strings`."""
    a, b, c, d = (int(n) for n in numeric_version(version).split("."))
    fixed = struct.pack("<13I", 0xFEEF04BD, 0x00010000, a << 16 | b, c << 16 | d,
                        a << 16 | b, c << 16 | d, 0x3F, 0, 0x00040004, 1, 0, 0, 0)
    table = b"".join(_block(k, v.encode("utf-16-le") + b"\0\0", text=True)
                     for k, v in strings.items())
    string_info = _block("StringFileInfo", b"", children=_block(
        f"{LANGUAGE:04X}{CODEPAGE:04X}", b"", children=table, text=True), text=True)
    var_info = _block("VarFileInfo", b"", children=_block(
        "Translation", struct.pack("<2H", LANGUAGE, CODEPAGE)), text=True)
    return _block("VS_VERSION_INFO", fixed, children=string_info + var_info)


def icon_resources(ico: bytes, path: Path) -> tuple[list[bytes], bytes]:
    """(RT_ICON images, RT_GROUP_ICON directory naming them 1..n) from an `.ico` file."""
    reserved, kind, count = struct.unpack_from("<3H", ico) if len(ico) >= 6 else (1, 0, 0)
    if reserved != 0 or kind != 1 or count == 0 or len(ico) < 6 + 16 * count:
        raise BuildError("icon", f"{path}: not a Windows .ico file")
    images: list[bytes] = []
    group = struct.pack("<3H", 0, 1, count)
    for i in range(count):
        *entry, size, offset = struct.unpack_from("<4B2H2I", ico, 6 + 16 * i)
        if offset + size > len(ico):
            raise BuildError("icon", f"{path}: image {i + 1} lies past the end of the file")
        images.append(ico[offset:offset + size])
        group += struct.pack("<4B2HIH", *entry, size, i + 1)
    return images, group


def set_app_resources(exe: Path, ico: Path, info: AppInfo) -> None:
    """Give `exe` (in place) the icon in `ico` and the version resource of `info`."""
    import lief  # only Windows targets need it

    lief.logging.disable()
    images, group = icon_resources(ico.read_bytes(), ico)
    binary = lief.PE.parse(str(exe))
    if binary is None:
        raise BuildError("stage", f"{exe}: not a Windows executable")
    kept = [node for node in (binary.resources.childs if binary.resources else [])
            if node.has_name or node.id not in (RT_ICON, RT_GROUP_ICON, RT_VERSION)]
    version = version_resource(version_strings(info, exe.name), info.version)
    for kind, entries in ((RT_ICON, list(enumerate(images, 1))), (RT_GROUP_ICON, [(1, group)]),
                          (RT_VERSION, [(1, version)])):
        folder = lief.PE.ResourceDirectory(kind)
        for number, data in entries:
            leaf = lief.PE.ResourceData(list(data))
            leaf.id = LANGUAGE
            folder.add_child(lief.PE.ResourceDirectory(number)).add_child(leaf)
        kept.append(folder)
    root = lief.PE.ResourceDirectory(0)
    # named types first, then by number: the order Windows' resource lookup expects
    for node in sorted(kept, key=lambda n: (not n.has_name, n.name if n.has_name else n.id)):
        root.add_child(node)
    binary.set_resources(root)
    config = lief.PE.Builder.config_t()
    config.resources = config.overlay = True
    built = exe.with_name(exe.name + ".rsrc")
    binary.write(str(built), config)
    fix_checksum(built)
    built.replace(exe)


def fix_checksum(exe: Path) -> None:
    """Set the PE header's CheckSum over the whole file, overlay included (as PyInstaller does
    after appending its archive; signing recomputes it again)."""
    data = bytearray(exe.read_bytes())
    field = struct.unpack_from("<I", data, 0x3C)[0] + 4 + 20 + _CHECKSUM_OFFSET
    data[field:field + 4] = b"\0\0\0\0"
    words = array.array("H", data + b"\0" * (len(data) % 2))
    if sys.byteorder == "big":
        words.byteswap()
    total = sum(words)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    data[field:field + 4] = struct.pack("<I", total + len(data))
    exe.write_bytes(data)

"""A fast structural look at a .wasm file (imports, exports) without compiling it.

Reads only the section headers and the import/export sections, seeking past the rest, so a
70 MB module takes about as long as a tiny one.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .regularfile import FileProblem, open_regular

MAGIC = b"\0asm"
CORE_VERSION = b"\x01\x00\x00\x00"
WASI_MODULE = "wasi_snapshot_preview1"
#: Import modules wvwasi provides: WASI preview1 and allow-listed sockets (runtime/host/net.py).
HOST_MODULES = (WASI_MODULE, "wvwasi_net")
_IMPORT_SECTION, _EXPORT_SECTION = 2, 7
_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}


class WasmModuleError(Exception):
    """A .wasm file wvwasi cannot run; `str()` names the file and why."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class ModuleInfo:
    """What a core module imports `(module, name, kind)` and exports `(name, kind)`."""

    imports: tuple[tuple[str, str, str], ...]
    exports: tuple[tuple[str, str], ...]


class _Malformed(Exception):
    """Bytes that do not follow the binary format; the message says where and why."""


def _byte(f: BinaryIO) -> int:
    byte = f.read(1)
    if not byte:
        raise _Malformed("unexpected end of data")
    return byte[0]


def _uleb(f: BinaryIO) -> int:
    """A LEB128 u32: at most 5 bytes, value below 2**32 (the format's limit for sizes/counts)."""
    result = 0
    for shift in range(0, 35, 7):
        byte = _byte(f)
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >= 1 << 32:
                raise _Malformed("LEB128 integer larger than 32 bits")
            return result
    raise _Malformed("LEB128 integer longer than 5 bytes")


def _name(f: BinaryIO) -> str:
    size = _uleb(f)
    data = f.read(size)
    if len(data) != size:
        raise _Malformed("name runs past the end of its section")
    return data.decode("utf-8", "replace")


def _skip_limits(f: BinaryIO) -> None:
    flags = _byte(f)
    _uleb(f)
    if flags & 1:
        _uleb(f)


def _import_kind(f: BinaryIO) -> str:
    """Read one import descriptor, returning its kind."""
    tag = _byte(f)
    if tag == 0:  # func: type index
        _uleb(f)
    elif tag == 1:  # table: reftype, limits
        _byte(f)
        _skip_limits(f)
    elif tag == 2:  # memory: limits
        _skip_limits(f)
    elif tag == 3:  # global: valtype, mutability
        _byte(f)
        _byte(f)
    elif tag == 4:  # tag: attribute, type index
        _byte(f)
        _uleb(f)
    else:
        raise _Malformed(f"unknown import kind 0x{tag:02x}")
    return _KINDS[tag]


def _sections(f: BinaryIO, imports: list, exports: list) -> None:
    """Walk the sections after the header, collecting the import and export entries."""
    size_left = os.fstat(f.fileno()).st_size - f.tell()
    while section_id := f.read(1):
        start = f.tell()
        size = _uleb(f)
        size_left -= 1 + f.tell() - start
        if size > size_left:
            raise _Malformed(f"section {section_id[0]} of {size} bytes runs past the end of the "
                             f"file ({size_left} bytes left)")
        size_left -= size
        if section_id[0] not in (_IMPORT_SECTION, _EXPORT_SECTION):
            f.seek(size, io.SEEK_CUR)
            continue
        body = io.BytesIO(f.read(size))
        for _ in range(_uleb(body)):
            if section_id[0] == _IMPORT_SECTION:
                module, name = _name(body), _name(body)
                imports.append((module, name, _import_kind(body)))
            else:
                name, kind = _name(body), _byte(body)
                _uleb(body)
                exports.append((name, _KINDS.get(kind, f"0x{kind:02x}")))


def inspect(path: Path | str) -> ModuleInfo:
    """Imports and exports of the core module at `path`; WasmModuleError if it is not one."""
    path = Path(path)
    try:
        f = open_regular(path)
    except FileProblem as e:
        raise WasmModuleError(path, e.reason) from None
    imports: list[tuple[str, str, str]] = []
    exports: list[tuple[str, str]] = []
    with f:
        try:
            header = f.read(8)
            if header[:4] != MAGIC:
                raise WasmModuleError(path, "not a WebAssembly module (bad magic bytes)")
            if header[4:] != CORE_VERSION:
                if header[6:8] == b"\x01\x00":
                    raise WasmModuleError(
                        path, "is a WASI 0.2 component, wvwasi runs preview1 modules "
                        "(build for wasm32-wasip1 / wasm32-wasi)")
                raise WasmModuleError(path, f"unsupported WebAssembly version {header[4:].hex()}")
            _sections(f, imports, exports)
        except _Malformed as e:
            raise WasmModuleError(path, f"malformed WebAssembly module ({e})") from None
        except OSError as e:
            raise WasmModuleError(path, f"cannot read: {e.strerror or e}") from None
    return ModuleInfo(tuple(imports), tuple(exports))


def check_command_module(path: Path | str) -> ModuleInfo:
    """`inspect()`, then require a WASI preview1 command: only host imports and `_start`."""
    path = Path(path)
    info = inspect(path)
    foreign: dict[str, list[str]] = {}
    for module, name, _kind in info.imports:
        if module not in HOST_MODULES:
            foreign.setdefault(module, []).append(name)
    if foreign:
        listed = "; ".join(
            f'"{m}" ({", ".join(names[:4])}{", ..." if len(names) > 4 else ""})'
            for m, names in foreign.items()
        )
        raise WasmModuleError(
            path, f"imports from modules wvwasi does not provide: {listed}; "
            f"only {WASI_MODULE} (WASI preview1) and wvwasi_net (sockets, docs/manifest.md) "
            "are available: build it as a WASI preview1 command (wasm32-wasip1 / wasm32-wasi)")
    exports = dict(info.exports)
    if exports.get("_start") != "func":
        hint = " (it exports _initialize)" if "_initialize" in exports else ""
        raise WasmModuleError(
            path, f"has no _start export: it looks like a reactor/library module{hint}; "
            "wvwasi runs command modules (a program with main())")
    if any(m == WASI_MODULE for m, _, _ in info.imports) and exports.get("memory") != "memory":
        raise WasmModuleError(path, 'exports no memory named "memory", which WASI needs')
    return info

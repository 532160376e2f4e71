"""Module loading: compile once, the on-disk cache, shipped precompiled artefacts, and the silent
fallback to compiling when an artefact is stale or damaged."""

from __future__ import annotations

import json
import logging
import platform
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from wvwasi.runtime.host import modules
from wvwasi.runtime.host.modules import (
    ModuleLoader,
    WasmLoadError,
    artefact_name,
    header_path,
    make_engine,
    precompile,
    sha256_file,
    write_artefact,
    write_payload_digests,
)
from wvwasi.runtime.host.service_host import ServiceHost
from wvwasi.runtime.manifest import load_manifest
from wvwasi.runtime.paths import PathContext

TEXT = b"one two three\nfour\n"
WC_OUTPUT = b"2 4 19\n"


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every real compilation the loaders of this test do."""
    calls: list[Path] = []
    original = ModuleLoader._compile

    def spy(self: ModuleLoader, wasm: Path) -> wasmtime.Module:
        calls.append(wasm)
        return original(self, wasm)

    monkeypatch.setattr(ModuleLoader, "_compile", spy)
    return calls


@pytest.fixture
def wc(tmp_path: Path, wasm_fixture: Callable[[str], Path]) -> Path:
    """A private copy of the wc fixture (tests modify or replace it)."""
    path = tmp_path / "wc.wasm"
    shutil.copyfile(wasm_fixture("wc"), path)
    return path


def run_wc(engine: wasmtime.Engine, module: wasmtime.Module, tmp_path: Path) -> bytes:
    """Run a loaded wc module on TEXT: proves the module really works."""
    (tmp_path / "stdin").write_bytes(TEXT)
    wasi = wasmtime.WasiConfig()
    wasi.stdin_file = str(tmp_path / "stdin")
    wasi.stdout_file = str(tmp_path / "stdout")
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    start = linker.instantiate(store, module).exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    start(store)
    store.close()
    return (tmp_path / "stdout").read_bytes()


def test_compiles_once_then_loads_from_the_disk_cache(
    wc: Path, tmp_path: Path, compiles: list[Path]
) -> None:
    cache = tmp_path / "cache"
    engine = make_engine()
    loader = ModuleLoader(engine, cache)
    module = loader.load(wc)
    assert loader.load(wc) is module
    assert compiles == [wc]
    (artefact,) = (cache / "modules").glob("*.cwasm")
    assert json.loads(header_path(artefact).read_text())["wasm_sha256"] == sha256_file(wc)
    assert run_wc(engine, module, tmp_path) == WC_OUTPUT

    other_engine = make_engine()
    cached = ModuleLoader(other_engine, cache).load(wc)
    assert compiles == [wc]  # a new process (new engine) deserializes instead
    assert run_wc(other_engine, cached, tmp_path) == WC_OUTPUT


def test_shipped_artefact_is_used(wc: Path, tmp_path: Path, compiles: list[Path]) -> None:
    shipped = tmp_path / "precompiled"
    out = precompile(wc, shipped / artefact_name(wc))
    write_payload_digests(tmp_path)
    assert json.loads(header_path(out).read_text())["wasm_sha256"] == sha256_file(wc)
    engine = make_engine()
    module = ModuleLoader(engine, None, shipped).load(wc)
    assert compiles == []
    assert run_wc(engine, module, tmp_path) == WC_OUTPUT


def _damage_header(path: Path) -> None:
    header = json.loads(header_path(path).read_text())
    header.update(wasmtime="0.0.1", settings="0123456789abcdef")
    header_path(path).write_text(json.dumps(header))


def _damage_wasmtime_header(path: Path) -> None:
    """Corrupt wasmtime's own header (the ELF magic) and re-sign it: wasmtime must refuse it."""
    data = bytearray(path.read_bytes())
    data[1:4] = b"XXX"
    path.write_bytes(bytes(data))
    header = json.loads(header_path(path).read_text())
    header["payload_sha256"] = sha256_file(path)
    header_path(path).write_text(json.dumps(header))


def _flip_payload_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 3 // 4] ^= 0xFF
    path.write_bytes(bytes(data))


def _precompile_into(wasm: Path, path: Path) -> None:
    precompile(wasm, path)


def _other_engine_settings(path: Path, wasm: Path) -> None:
    """A well-formed artefact whose payload was compiled with other engine settings: the header
    is right, wasmtime itself must refuse it."""
    module = wasmtime.Module.from_file(wasmtime.Engine(), str(wasm))
    write_artefact(module, sha256_file(wasm), path)


DAMAGE: dict[str, Callable[[Path, Path, Path], None]] = {
    "wrong version header": lambda art, wasm, other: _damage_header(art),
    "wasmtime header corrupted": lambda art, wasm, other: _damage_wasmtime_header(art),
    "header missing": lambda art, wasm, other: header_path(art).unlink(),
    "header garbage": lambda art, wasm, other: header_path(art).write_bytes(b"\xff{"),
    "payload byte flipped": lambda art, wasm, other: _flip_payload_byte(art),
    "truncated": lambda art, wasm, other: art.write_bytes(art.read_bytes()[:40]),
    "empty": lambda art, wasm, other: art.write_bytes(b""),
    "not an artefact": lambda art, wasm, other: art.write_bytes(b"\0asm garbage" * 100),
    "made from another wasm": lambda art, wasm, other: _precompile_into(other, art),
    "other engine settings": lambda art, wasm, other: _other_engine_settings(art, wasm),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_bad_artefact_falls_back_to_compiling(
    damage: str,
    wc: Path,
    tmp_path: Path,
    compiles: list[Path],
    wasm_fixture: Callable[[str], Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    shipped = tmp_path / "precompiled"
    artefact = precompile(wc, shipped / artefact_name(wc))
    write_payload_digests(tmp_path)
    DAMAGE[damage](artefact, wc, wasm_fixture("echo_lines"))
    cache = tmp_path / "cache"
    engine = make_engine()
    with caplog.at_level(logging.INFO, logger=modules.log.name):
        module = ModuleLoader(engine, cache, shipped).load(wc)
    assert compiles == [wc]
    assert "ignoring precompiled" in caplog.text
    assert run_wc(engine, module, tmp_path) == WC_OUTPUT
    # The fresh compilation went to the cache: the next start neither compiles nor complains.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=modules.log.name):
        again = ModuleLoader(make_engine(), cache).load(wc)
    assert compiles == [wc] and again is not None
    assert "ignoring" not in caplog.text


def test_damaged_cache_entry_is_replaced(wc: Path, tmp_path: Path, compiles: list[Path]) -> None:
    cache = tmp_path / "cache"
    ModuleLoader(make_engine(), cache).load(wc)
    (entry,) = (cache / "modules").glob("*.cwasm")
    _flip_payload_byte(entry)
    engine = make_engine()
    module = ModuleLoader(engine, cache).load(wc)
    assert compiles == [wc, wc]
    assert run_wc(engine, module, tmp_path) == WC_OUTPUT
    ModuleLoader(make_engine(), cache).load(wc)
    assert len(compiles) == 2  # the rewritten entry is valid again


def test_changed_file_is_reloaded(
    wc: Path, tmp_path: Path, compiles: list[Path], wasm_fixture: Callable[[str], Path]
) -> None:
    engine = make_engine()
    loader = ModuleLoader(engine, None)
    first = loader.load(wc)
    wc.touch()  # a new mtime with the same bytes: still the same module
    assert loader.load(wc) is first
    shutil.copyfile(wasm_fixture("echo_lines"), wc)
    second = loader.load(wc)
    assert second is not first
    assert compiles == [wc, wc]
    assert run_wc(engine, second, tmp_path) == TEXT  # it is echo_lines now


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"hello, not wasm", "not a WebAssembly module"),
        (b"\0asm\x01\0\0\0\xffgarbage", "invalid WebAssembly"),
    ],
)
def test_unloadable_wasm_names_the_file(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "broken.wasm"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WasmLoadError, match=message) as info:
        ModuleLoader(make_engine(), tmp_path / "cache").load(path)
    assert str(path) in str(info.value)


def test_host_uses_shipped_artefacts(
    tmp_path: Path, compiles: list[Path], make_project: Callable[..., Any]
) -> None:
    manifest = load_manifest(make_project({"wc": {"source": "wc"}}))
    shipped = tmp_path / "precompiled"
    wasm = manifest.services["wc"].source
    precompile(wasm, shipped / artefact_name(wasm))
    write_payload_digests(tmp_path)
    empty_cache = tmp_path / "cache"
    paths = PathContext.for_app(manifest, base_dirs={"CACHE": empty_cache})
    with ServiceHost(manifest, paths=paths, precompiled_dir=shipped) as host:
        assert host.run_task("wc", stdin=TEXT).stdout == WC_OUTPUT
    assert compiles == []
    assert not list(empty_cache.rglob("*.cwasm"))


def isa_flags(artefact: bytes) -> dict[str, bool]:
    """The x86 ISA flags recorded in a serialized module (wasmtime 50: a length-prefixed name,
    then FlagValue::Bool = tag 2 and the value)."""
    flags = {}
    for match in re.finditer(rb"has_[a-z0-9_]+", artefact):
        name, end = match.group(), match.end()
        if artefact[match.start() - 1] == len(name) and artefact[end] == 2:
            flags[name.decode()] = artefact[end + 1] == 1
    return flags


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 feature flags")
def test_precompiled_artefact_needs_only_baseline_cpu_features(wc: Path, tmp_path: Path) -> None:
    """A build machine with AVX-512 must still produce artefacts an older CPU can load."""
    portable = isa_flags(precompile(wc, tmp_path / "p.cwasm").read_bytes())
    assert {"has_avx", "has_avx2", "has_bmi1", "has_avx512f"} <= portable.keys()
    enabled = {name for name, on in portable.items() if on}
    assert enabled <= {"has_sse3", "has_ssse3", "has_sse41", "has_sse42", "has_popcnt"}
    native = isa_flags(wasmtime.Module(make_engine(), wc.read_bytes()).serialize())
    assert native.keys() == portable.keys()
    if "avx2" in Path("/proc/cpuinfo").read_text():
        assert native["has_avx2"]  # the same engine settings would otherwise use AVX2 here

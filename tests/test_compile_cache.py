"""The compile cache as the runtime uses it: a module that fails to link is never cached, the
size cap evicts the least recently used artefacts, `wvwasi build`'s portable artefacts serve
dev/exec, and a built app's service shipped as artefact + gzip-compressed `.wasm` loads the
artefact, or falls back to the `.wasm` when the artefact cannot be used."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from wvwasi.runtime.host import modules, service_host
from wvwasi.runtime.host.modules import (
    ModuleLoader,
    WasmLoadError,
    artefact_name,
    cache_entry,
    evict_lru,
    header_path,
    make_engine,
    packed_path,
    precompile,
    sha256_file,
    write_payload_digests,
)
from wvwasi.runtime.host.service_host import ServiceHost
from wvwasi.runtime.manifest import load_manifest
from wvwasi.runtime.paths import PathContext

#: Compiles (a valid module) but cannot link as WASI: it imports a function nobody provides.
UNLINKABLE = """(module (import "env" "missing" (func)) (memory (export "memory") 1)
  (func (export "_start") call 0))"""


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    original = ModuleLoader._compile_bytes

    def spy(self: ModuleLoader, wasm: Path, data: bytes) -> wasmtime.Module:
        calls.append(wasm)
        return original(self, wasm, data)

    monkeypatch.setattr(ModuleLoader, "_compile_bytes", spy)
    return calls


def _host(project: Path, cache: Path, tmp_path: Path, **kwargs: Any) -> ServiceHost:
    manifest = load_manifest(project)
    dirs = {v: tmp_path / "dirs" / v.lower() for v in ("APPDATA", "DOCUMENTS", "HOME")}
    paths = PathContext.for_app(manifest, base_dirs={**dirs, "CACHE": cache})
    return ServiceHost(manifest, paths=paths, **kwargs)


def test_a_module_that_fails_to_link_is_never_cached(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(wasmtime.wat2wasm(UNLINKABLE))
    project = make_project({"bad": {"source": bad, "kind": "task"}})
    cache = tmp_path / "cache"
    with _host(project, tmp_path / "app-cache", tmp_path, compile_cache=cache) as host:
        for _ in range(2):  # compiled again, never cached, each time
            with pytest.raises(WasmLoadError, match=r"bad\.wasm: cannot link as a WASI"):
                host.run_task("bad", stdin=b"")
    assert not list(cache.rglob("*.cwasm")) and not list(cache.rglob("*.json"))


def test_a_linked_module_is_cached_and_the_cache_is_shared(
    make_project: Callable[..., Path], wasm_fixture: Callable[[str], Path], tmp_path: Path,
    compiles: list[Path],
) -> None:
    project = make_project({"wc": {"source": "wc", "kind": "task"}})
    shared = tmp_path / "shared"
    with _host(project, tmp_path / "app-cache", tmp_path, compile_cache=shared) as host:
        assert host.run_task("wc", stdin=b"a b\n").stdout == b"1 2 4\n"
    (entry,) = (shared / "modules").glob("*.cwasm")
    assert entry == cache_entry(shared, sha256_file(wasm_fixture("wc")))
    assert not (tmp_path / "app-cache" / "modules").exists()  # the app's own cache untouched


def test_an_app_cache_that_cannot_be_created_only_turns_the_compile_cache_off(
    make_project: Callable[..., Path], tmp_path: Path, compiles: list[Path],
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    monkeypatch.setattr(service_host, "app_code_dir", lambda _ident: in_the_way / "code")
    project = make_project({"wc": {"source": "wc", "kind": "task"}})
    for _ in range(2):  # each start runs it, compiled again: nothing was cached
        with _host(project, tmp_path / "cache", tmp_path) as host:
            assert host.run_task("wc", stdin=b"a b\n").stdout == b"1 2 4\n"
    assert len(compiles) == 2
    assert "compile cache off" in caplog.text and "a-file" in caplog.text


def test_builds_portable_artefact_serves_dev(
    make_project: Callable[..., Path], wasm_fixture: Callable[[str], Path], tmp_path: Path,
    compiles: list[Path],
) -> None:
    project = make_project({"wc": {"source": "wc", "kind": "task"}})
    shared = tmp_path / "shared"
    wasm = project / "services" / "wc.wasm"
    precompile(wasm, cache_entry(shared, sha256_file(wasm), portable=True), cached=True)  # build
    with _host(project, tmp_path / "c", tmp_path, compile_cache=shared) as host:
        assert host.run_task("wc", stdin=b"a b\n").stdout == b"1 2 4\n"
    assert compiles == []


def test_size_cap_evicts_least_recently_used(tmp_path: Path, wasm_fixture: Callable[[str], Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "modules"
    folder.mkdir()
    for i, name in enumerate(("old", "mid", "new")):
        art = folder / f"{name}.cwasm"
        art.write_bytes(b"x" * 1000)
        header_path(art).write_text("{}")
        os.utime(art, (1_000_000 + i, 1_000_000 + i))
    assert evict_lru(folder, 10_000) == 0
    freed = evict_lru(folder, 2100, keep=folder / "old.cwasm")
    assert freed == 1002 and sorted(p.name for p in folder.glob("*.cwasm")) == [
        "new.cwasm", "old.cwasm"]
    assert not header_path(folder / "mid.cwasm").exists()

    # the loader applies the cap (WVWASI_COMPILE_CACHE_MB) after caching a new module
    monkeypatch.setenv("WVWASI_COMPILE_CACHE_MB", "0.001")
    ModuleLoader(make_engine(), tmp_path).load(wasm_fixture("wc"))
    names = sorted(p.name for p in folder.glob("*.cwasm"))
    assert len(names) == 1 and names[0].startswith(sha256_file(wasm_fixture("wc")))


def _shipped(tmp_path: Path, wasm: Path) -> tuple[Path, Path]:
    """A built payload's services/ and precompiled/ folders for `wasm` (packed), listed in its
    payload.json as `wvwasi build` does."""
    services, shipped = tmp_path / "app" / "services", tmp_path / "app" / "precompiled"
    services.mkdir(parents=True)
    target = services / "wc.wasm"
    packed_path(target).write_bytes(gzip.compress(wasm.read_bytes()))
    precompile(wasm, shipped / artefact_name(target))
    write_payload_digests(tmp_path / "app")
    return target, shipped


def test_packed_service_loads_the_artefact_without_decompressing(
    tmp_path: Path, wasm_fixture: Callable[[str], Path], compiles: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target, shipped = _shipped(tmp_path, wasm_fixture("wc"))
    monkeypatch.setattr(modules.gzip, "decompress", lambda _d: pytest.fail("decompressed"))
    loader = ModuleLoader(make_engine(), tmp_path / "cache", shipped)
    module = loader.load(target)
    assert compiles == [] and loader.load(target) is module
    assert {e.name for e in module.exports} >= {"_start", "memory"}


@pytest.mark.parametrize("damage", ["flipped byte", "other wasmtime", "missing"])
def test_packed_service_falls_back_to_the_compressed_wasm(
    damage: str, tmp_path: Path, wasm_fixture: Callable[[str], Path], compiles: list[Path],
) -> None:
    wasm = wasm_fixture("wc")
    target, shipped = _shipped(tmp_path, wasm)
    artefact = shipped / artefact_name(target)
    if damage == "flipped byte":
        data = bytearray(artefact.read_bytes())
        data[len(data) // 2] ^= 0xFF
        artefact.write_bytes(bytes(data))
    elif damage == "other wasmtime":  # e.g. a CPU/engine it was not made for
        header = json.loads(header_path(artefact).read_text())
        header["settings"] = "0123456789abcdef"
        header_path(artefact).write_text(json.dumps(header))
    else:
        artefact.unlink()
    cache = tmp_path / "cache"
    module = ModuleLoader(make_engine(), cache, shipped).load(target)
    assert compiles == [target]
    assert (cache / "modules").is_dir() and cache_entry(cache, sha256_file(wasm)).is_file()
    assert {e.name for e in module.exports} >= {"_start", "memory"}
    ModuleLoader(make_engine(), cache, shipped).load(target)  # a later launch: from the cache
    assert compiles == [target]


def test_damaged_packed_wasm_is_a_one_line_error(tmp_path: Path,
                                                 wasm_fixture: Callable[[str], Path]) -> None:
    target, shipped = _shipped(tmp_path, wasm_fixture("wc"))
    (shipped / artefact_name(target)).unlink()
    packed_path(target).write_bytes(b"\x1f\x8b junk")
    with pytest.raises(WasmLoadError, match=r"wc\.wasm\.gz: cannot decompress"):
        ModuleLoader(make_engine(), None, shipped).load(target)
    shutil.rmtree(tmp_path / "app")

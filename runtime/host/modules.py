"""Compiling services: one Engine configuration, precompiled artefacts and the on-disk cache.

An artefact is two files: `NAME.cwasm`, wasmtime's serialized module as it is (so it loads with
`deserialize_file`, memory-mapped: 170 MB of yosys in ~0.1 s instead of ~1 s), and
`NAME.cwasm.json`, which binds it to the `.wasm` it came from (SHA-256), to the engine settings and
wasmtime version. wasmtime happily loads corrupted bytes, so an artefact's SHA-256 is checked
before deserializing, against a digest kept apart from it, never one beside it: a built app's
artefacts against its payload's `payload.json` (written by `wvwasi build`), a compile cache's
entries (`<cache>/modules/`) against `<cache>/modules-digests/<entry>.sha256`, so that whoever can
write the entries' folder alone cannot make a changed entry load (docs/security.md). Any mismatch
or load failure falls back to compiling, never to a crash. Only regular files are read, listings
with a bound, cache entries not through a symlink and not beyond MAX_ARTEFACT_BYTES.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import stat
import sys
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import wasmtime

from ..regularfile import FileProblem, open_regular, read_regular

log = logging.getLogger("wvwasi.modules")

WASMTIME_VERSION = version("wasmtime")

#: Engine settings shared by the runtime and the precompiler; artefacts only load when they match.
ENGINE_SETTINGS = {"epoch_interruption": True, "cranelift_opt_level": "speed"}

#: CPU features every x86-64 machine of the last ~15 years has; portable artefacts use only these.
_PORTABLE_X86_FLAGS = ("has_sse3", "has_ssse3", "has_sse41", "has_sse42", "has_popcnt")
_ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
_SYSTEMS = {"linux": "unknown-linux-gnu", "win32": "pc-windows-msvc", "darwin": "apple-darwin"}


def host_triple() -> str:
    """The target triple of this machine, as wasmtime names it."""
    arch = _ARCHES.get(platform.machine().lower(), platform.machine().lower())
    return f"{arch}-{_SYSTEMS.get(sys.platform, 'unknown-linux-gnu')}"


def settings_key() -> str:
    """Identifies the engine settings + wasmtime version + OS/arch an artefact must match."""
    ident = json.dumps([WASMTIME_VERSION, ENGINE_SETTINGS, host_triple()], sort_keys=True)
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def make_engine(*, portable: bool = False) -> wasmtime.Engine:
    """An Engine with wvwasi's settings; `portable` compiles for a baseline CPU of this arch."""
    config = wasmtime.Config()
    config.epoch_interruption = ENGINE_SETTINGS["epoch_interruption"]
    config.cranelift_opt_level = ENGINE_SETTINGS["cranelift_opt_level"]
    if portable:
        triple = host_triple()
        config.target = triple
        if triple.startswith("x86_64"):
            for flag in _PORTABLE_X86_FLAGS:
                config.cranelift_flag_enable(flag)
    return wasmtime.Engine(config)


def sha256_file(path: Path, *, limit: int | None = None, follow: bool = True) -> str:
    """Hex SHA-256 of a regular file's bytes; OSError for anything else (a FIFO, /dev/zero, a
    symlink unless `follow`, a file larger than `limit` bytes: refused before reading)."""
    digest = hashlib.sha256()
    try:
        f = open_regular(path, follow=follow)
    except FileProblem as e:
        raise OSError(errno.EINVAL, e.reason, str(path)) from None
    with f:
        if limit is not None and os.fstat(f.fileno()).st_size > limit:
            raise OSError(errno.EFBIG, f"is larger than {limit:,} bytes", str(path))
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


#: Files this process found to have a SHA-256 it trusts, moments before loading them:
#: `{path: ((device, inode, size, mtime), digest)}` (note_checked).
_checked: dict[str, tuple[tuple[int, int, int, int] | None, str]] = {}


def _identity(path: Path | str) -> tuple[int, int, int, int] | None:
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def note_checked(path: Path, digest: str) -> None:
    """Record that `path` (a regular file, not a symlink) was just found to have SHA-256
    `digest` against a trusted listing: artefact_problem() then trusts it while the file keeps
    its device, inode, size and modification time, instead of hashing it a second time. Only
    for files in a folder no service can write (the onefile extraction under the code root)."""
    identity = _identity(path)
    if identity is not None:
        _checked[str(path)] = (identity, digest)


#: A built payload's list of its files' SHA-256, `{"sha256": {"precompiled/x.cwasm": hex}}`.
PAYLOAD_DIGESTS = "payload.json"
#: The largest `payload.json` or sidecar read.
MAX_LISTING_BYTES = 16 << 20


def write_payload_digests(payload: Path) -> Path:
    """List the SHA-256 of every file under `payload` in `payload/payload.json` (a build step:
    the runtime trusts shipped artefacts only with these digests)."""
    files = sorted(p for p in Path(payload).rglob("*") if p.is_file() and not p.is_symlink())
    listing = {p.relative_to(payload).as_posix(): sha256_file(p) for p in files
               if p.name != PAYLOAD_DIGESTS}
    out = Path(payload) / PAYLOAD_DIGESTS
    out.write_text(json.dumps({"sha256": listing}, indent=0, sort_keys=True) + "\n",
                   encoding="utf-8")
    return out


def payload_digests(payload: Path) -> dict[str, str]:
    """`{path in the payload: SHA-256}` from `payload/payload.json`; {} (with a log line) when
    it is missing or unreadable: then no shipped artefact is trusted."""
    try:
        listing = json.loads(read_regular(Path(payload) / PAYLOAD_DIGESTS, MAX_LISTING_BYTES))
        digests = listing["sha256"]
        if isinstance(digests, dict) and all(isinstance(v, str) for v in digests.values()):
            return digests
    except FileProblem as e:
        log.info("%s: %s: precompiled services are not used", payload / PAYLOAD_DIGESTS, e.reason)
        return {}
    except (ValueError, KeyError, TypeError):
        pass
    log.info("%s: unreadable: precompiled services are not used", payload / PAYLOAD_DIGESTS)
    return {}


class WasmLoadError(Exception):
    """A `.wasm` that cannot be compiled: names the file and why."""


#: The largest `.wasm` read for validation or compiling (the biggest real ones are ~200 MB).
MAX_MODULE_BYTES = 1 << 30
#: The largest artefact hashed (4 times that: a 170 MB `.cwasm` comes from a 69 MB module); a
#: bigger one is refused before a byte is read, so a planted huge or sparse file costs nothing.
MAX_ARTEFACT_BYTES = 4 << 30


#: What to do about wasmtime errors a toolchain setting causes, by a phrase of the error.
_HINTS = {
    "legacy_exceptions": "the module uses legacy exception handling (`try`/`catch`), which "
    "wasmtime cannot run: rebuild it with standard exception handling (exnref; Emscripten: "
    "`-fwasm-exceptions -sWASM_LEGACY_EXCEPTIONS=0`) or without exceptions, or convert it with "
    "Binaryen: `wasm-opt --translate-to-exnref -all -o new.wasm old.wasm`",
}


def error_text(e: Exception) -> str:
    """wasmtime's error with its numbered "Caused by:" chain on one line, every cause kept,
    and a hint for errors whose cure is known."""
    parts = []
    for line in str(e).splitlines():
        line = line.strip()
        if line and line != "Caused by:":
            parts.append(re.sub(r"\A\d+: ", "", line))
    text = ": ".join(parts) or type(e).__name__
    hints = [hint for phrase, hint in _HINTS.items() if phrase in text]
    return "; ".join([text, *hints])


def validate(engine: wasmtime.Engine, data: bytes, wasm: Path) -> None:
    """WasmLoadError unless `engine` can compile `data`; checks without compiling (~1 s for
    a module whose full compile takes minutes)."""
    if data[:4] != b"\0asm":
        raise WasmLoadError(f"{wasm}: not a WebAssembly module (bad magic bytes)")
    try:
        wasmtime.Module.validate(engine, data)
    except wasmtime.WasmtimeError as e:
        raise WasmLoadError(f"{wasm}: invalid WebAssembly: {error_text(e)}") from None


def read_module(wasm: Path) -> bytes:
    """The bytes of `wasm`: a regular file of at most MAX_MODULE_BYTES, else WasmLoadError."""
    try:
        return read_regular(wasm, MAX_MODULE_BYTES)
    except FileProblem as e:
        raise WasmLoadError(f"{wasm}: {e.reason}") from None


def validate_file(wasm: Path, engine: wasmtime.Engine | None = None) -> None:
    """`validate()` the module at `wasm` (for `wvwasi check`, `exec` and `build`)."""
    validate(engine or make_engine(), read_module(wasm), wasm)


def header_path(artefact: Path) -> Path:
    """The JSON sidecar that validates `artefact`."""
    return artefact.with_name(artefact.name + ".json")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_artefact(module: wasmtime.Module, wasm_sha256: str, out: Path, *,
                   cached: bool = False) -> None:
    """Serialize `module` to `out` (+ its `.json` sidecar), each file replaced atomically;
    `cached`: `out` is a compile cache entry, its SHA-256 is recorded apart (digest_path)."""
    payload = module.serialize()
    header = {"wasm_sha256": wasm_sha256, "settings": settings_key(), "wasmtime": WASMTIME_VERSION}
    _write_atomic(out, payload)
    _write_atomic(header_path(out), json.dumps(header, sort_keys=True).encode() + b"\n")
    if cached:
        _write_atomic(digest_path(out), hashlib.sha256(payload).hexdigest().encode() + b"\n")


def read_artefact(
    engine: wasmtime.Engine, path: Path, wasm_sha256: str, expected: str | None
) -> wasmtime.Module | None:
    """The module in artefact `path` if it is intact and matches; None (and a log line) if not.
    `expected`: its SHA-256 as something apart from it lists it (the payload's listing, the
    cache's digest; None: nothing does, so it is not loaded)."""
    reason = artefact_problem(path, wasm_sha256, expected)
    if reason is None:
        try:
            return wasmtime.Module.deserialize_file(engine, str(path))
        except (wasmtime.WasmtimeError, ValueError) as e:
            reason = error_text(e)
    log.info("ignoring precompiled %s: %s; compiling instead", path.name, reason)
    return None


def artefact_problem(path: Path, wasm_sha256: str, expected: str | None) -> str | None:
    """Why artefact `path` cannot stand for that `.wasm` (None: intact and matching): its
    sidecar must name the `.wasm` and these engine settings, its bytes have SHA-256 `expected`."""
    if expected is None:
        return "no digest of it is recorded apart from it"
    try:
        header = json.loads(read_regular(header_path(path), MAX_LISTING_BYTES))
    except FileProblem as e:
        return f"its .json header {e.reason}"
    except ValueError:
        return "unreadable .json header"
    if not isinstance(header, dict):
        return "unreadable .json header"
    if header.get("wasm_sha256") != wasm_sha256:
        return "made from a different .wasm"
    if header.get("settings") != settings_key():
        return f"made by wasmtime {header.get('wasmtime')} or other engine settings"
    if _checked.get(str(path)) == (_identity(path), expected):
        return None  # checked moments ago in this process (note_checked)
    try:
        digest = sha256_file(path, limit=MAX_ARTEFACT_BYTES, follow=False)
    except OSError as e:
        return f"unreadable: {e.strerror}"
    if digest != expected:
        return "corrupted or changed (digest mismatch)"
    return None


def copy_artefact(src: Path, dest: Path) -> Path:
    """Copy an artefact and its `.json` sidecar (they only load together)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    shutil.copyfile(header_path(src), header_path(dest))
    return dest


def precompile(wasm: Path, out: Path, *, cached: bool = False) -> Path:
    """Compile `wasm` for distribution: loadable on any CPU of this OS/arch, not only this one.
    Nothing is written if it does not compile; `cached`: `out` is a compile cache entry."""
    data = read_module(Path(wasm))
    engine = make_engine(portable=True)
    validate(engine, data, wasm)
    try:
        module = wasmtime.Module(engine, data)
    except wasmtime.WasmtimeError as e:
        raise WasmLoadError(f"{wasm}: cannot compile: {error_text(e)}") from None
    write_artefact(module, hashlib.sha256(data).hexdigest(), out, cached=cached)
    return out


def content_name(wasm: Path) -> str:
    """The content-addressed file name a build ships `wasm` under (`<sha256[:16]>.wasm`): two
    services of one module share its file, artefact and compiled module."""
    return f"{sha256_file(wasm)[:16]}.wasm"


def artefact_name(wasm: Path) -> str:
    """File name of the shipped artefact for `wasm` inside a precompiled folder."""
    return f"{Path(wasm).stem}.cwasm"


#: Called with a freshly compiled module before it is cached; raises to refuse it.
Check = Callable[[wasmtime.Module], object]


@dataclass
class _Loaded:
    stamp: tuple[int, int]
    sha256: str
    module: wasmtime.Module


class ModuleLoader:
    """Loads each `.wasm` once per process: shipped artefact, else disk cache, else compile."""

    def __init__(
        self, engine: wasmtime.Engine, cache_dir: Path | None, precompiled_dir: Path | None = None
    ) -> None:
        self.engine = engine
        self.cache_dir = cache_dir
        self.precompiled_dir = precompiled_dir
        self._shipped = payload_digests(precompiled_dir.parent) if precompiled_dir else {}
        self._loaded: dict[Path, _Loaded] = {}
        self._lock = threading.Lock()

    def load(self, wasm: Path, check: Check | None = None) -> wasmtime.Module:
        """The compiled module for `wasm` (reloaded when the file changed on disk). `check`
        (e.g. linking) must accept a freshly compiled module before it is cached; its
        exception propagates."""
        wasm = Path(wasm)
        if not wasm.exists() and packed_path(wasm).is_file():
            return self._load_packed(wasm, check)
        try:
            st = wasm.stat()
        except (OSError, ValueError) as e:  # ValueError: a NUL in the path
            why = e.strerror if isinstance(e, OSError) else e
            raise WasmLoadError(f"{wasm}: cannot read: {why}") from None
        if not stat.S_ISREG(st.st_mode):
            raise WasmLoadError(f"{wasm}: not a regular file")
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._loaded.get(wasm)
            if hit and hit.stamp == stamp:
                return hit.module
            sha = sha256_file(wasm)
            if hit and hit.sha256 == sha:
                hit.stamp = stamp
                return hit.module
            module = self._load_uncached(wasm, sha, check)
            self._loaded[wasm] = _Loaded(stamp, sha, module)
            return module

    def forget(self, wasm: Path) -> None:
        """Drop the in-process copy so the next load() rereads `wasm`."""
        with self._lock:
            self._loaded.pop(Path(wasm), None)

    def _store(self, module: wasmtime.Module, sha: str, check: Check | None) -> None:
        """Put a module compiled here into the disk cache, once `check` (the caller's link)
        accepted it: a module that fails to link is never cached."""
        if check is not None:
            check(module)
        cached = self._cache_path(sha)
        if cached is None:
            return
        try:
            write_artefact(module, sha, cached, cached=True)
            evict_lru(cached.parent, cache_cap(), keep=cached)
        except OSError as e:
            log.warning("cannot write the compile cache %s: %s", cached, e)

    def _load_uncached(self, wasm: Path, sha: str, check: Check | None) -> wasmtime.Module:
        candidates: list[tuple[Path, str | None, bool]] = []  # path, its digest, in the cache
        shipped = self._shipped_artefact(wasm)
        if shipped is not None:
            candidates.append((*shipped, False))
        cached = self._cache_path(sha)
        if cached is not None:  # this machine's own compile, else a build's portable one
            for entry in (cached, cache_entry(cached.parent.parent, sha, portable=True)):
                candidates.append((entry, entry_digest(entry), True))
        for path, expected, in_cache in candidates:
            if os.path.lexists(path):
                module = read_artefact(self.engine, path, sha, expected)
                if module is not None:
                    if in_cache:
                        _touch(path)
                    return module
        module = self._compile(wasm)
        self._store(module, sha, check)
        return module

    def _load_packed(self, wasm: Path, check: Check | None) -> wasmtime.Module:
        """A built app's service shipped as its artefact plus a gzip-compressed `.wasm`: the
        artefact, else (another CPU, a damaged artefact) the decompressed `.wasm` compiled."""
        packed = packed_path(wasm)
        stamp = (packed.stat().st_mtime_ns, -1)
        with self._lock:
            hit = self._loaded.get(wasm)
            if hit and hit.stamp == stamp:
                return hit.module
            shipped = self._shipped_artefact(wasm)
            sha = _shipped_wasm_sha256(shipped[0]) if shipped is not None else None
            module = read_artefact(self.engine, shipped[0], sha, shipped[1]) \
                if shipped is not None and sha is not None else None
            if module is None:
                try:
                    data = gzip.decompress(packed.read_bytes())
                except (OSError, EOFError, zlib.error) as e:
                    raise WasmLoadError(f"{packed}: cannot decompress: {e}") from None
                sha = hashlib.sha256(data).hexdigest()
                cached = self._cache_path(sha)
                module = read_artefact(self.engine, cached, sha, entry_digest(cached)) \
                    if cached is not None and os.path.lexists(cached) else None
                if module is None:
                    module = self._compile_bytes(wasm, data)
                    self._store(module, sha, check)
            self._loaded[wasm] = _Loaded(stamp, sha or "", module)
            return module

    def _shipped_artefact(self, wasm: Path) -> tuple[Path, str] | None:
        """The payload's artefact for `wasm` and its SHA-256 as `payload.json` lists it (None:
        no precompiled folder, or the artefact is not listed)."""
        if self.precompiled_dir is None:
            return None
        path = self.precompiled_dir / artefact_name(wasm)
        expected = self._shipped.get(f"{self.precompiled_dir.name}/{path.name}")
        if expected is None:
            if path.exists():
                log.info("ignoring precompiled %s: %s does not list it; compiling instead",
                         path.name, PAYLOAD_DIGESTS)
            return None
        return path, expected

    def _compile(self, wasm: Path) -> wasmtime.Module:
        return self._compile_bytes(wasm, read_module(wasm))

    def _compile_bytes(self, wasm: Path, data: bytes) -> wasmtime.Module:
        validate(self.engine, data, wasm)
        try:
            return wasmtime.Module(self.engine, data)
        except wasmtime.WasmtimeError as e:
            raise WasmLoadError(f"{wasm}: cannot compile: {error_text(e)}") from None

    def _cache_path(self, sha: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return cache_entry(self.cache_dir, sha)


# -- the on-disk compile cache: entries, size cap, packed services ---------------------------

#: Size cap of one compile cache folder unless WVWASI_COMPILE_CACHE_MB says otherwise.
DEFAULT_CACHE_MB = 2048
#: The compile cache's digests of its entries, beside (not inside) its `modules/` folder.
DIGESTS_FOLDER = "modules-digests"
PACKED_SUFFIX = ".gz"


def cache_entry(cache_dir: Path, wasm_sha256: str, *, portable: bool = False) -> Path:
    """The compile cache entry under `cache_dir` for a `.wasm` with this SHA-256 under this
    engine's settings; `portable` ones (made by `wvwasi build`) run on any CPU of the arch."""
    suffix = "-portable" if portable else ""
    return Path(cache_dir) / "modules" / f"{wasm_sha256}-{settings_key()}{suffix}.cwasm"


def cache_cap() -> int:
    """The compile cache's size cap in bytes (WVWASI_COMPILE_CACHE_MB, default 2 GiB)."""
    try:
        return int(float(os.environ.get("WVWASI_COMPILE_CACHE_MB", DEFAULT_CACHE_MB)) * 2**20)
    except ValueError:
        return DEFAULT_CACHE_MB * 2**20


def digest_path(entry: Path) -> Path:
    """Where a compile cache keeps the SHA-256 of `entry` (`<cache>/modules/X.cwasm`):
    `<cache>/modules-digests/X.cwasm.sha256`, outside the entries' folder."""
    return entry.parent.parent / DIGESTS_FOLDER / f"{entry.name}.sha256"


def entry_digest(entry: Path) -> str | None:
    """The SHA-256 recorded for compile cache entry `entry` (None: none, or not a digest)."""
    try:
        text = read_regular(digest_path(entry), 128).decode("ascii").strip()
    except (FileProblem, UnicodeDecodeError):
        return None
    return text if re.fullmatch(r"[0-9a-f]{64}", text) else None


def _touch(path: Path) -> None:
    """Mark a cache entry as just used (least-recently-used eviction reads mtimes)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def evict_lru(folder: Path, cap: int, *, keep: Path | None = None) -> int:
    """Remove the least recently used artefacts in `folder` until it holds at most `cap` bytes
    (never `keep`); returns the bytes freed. Stray sidecars and temporary files go too."""
    entries: list[tuple[float, int, Path]] = []
    total = 0
    for path in Path(folder).glob("*.cwasm"):
        try:
            st = path.stat()
            size = st.st_size + header_path(path).stat().st_size
        except OSError:
            size, st = 0, None
        total += size
        entries.append((st.st_mtime if st else 0.0, size, path))
    freed = 0
    for _mtime, size, path in sorted(entries):
        if total - freed <= cap:
            break
        if path == keep:
            continue
        for gone in (path, header_path(path), digest_path(path)):
            gone.unlink(missing_ok=True)
        freed += size
    return freed


def packed_path(wasm: Path) -> Path:
    """Where a built app keeps a service's `.wasm` compressed (the fallback beside its
    precompiled artefact)."""
    return Path(wasm).with_name(Path(wasm).name + PACKED_SUFFIX)


def _shipped_wasm_sha256(artefact: Path) -> str | None:
    """The `.wasm` digest a shipped artefact's header names (the packed `.wasm` beside it is
    from the same build, so it is not decompressed just to hash it)."""
    try:
        header = json.loads(read_regular(header_path(artefact), MAX_LISTING_BYTES))
    except (FileProblem, ValueError):
        return None
    sha = header.get("wasm_sha256") if isinstance(header, dict) else None
    return sha if isinstance(sha, str) else None

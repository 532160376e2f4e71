"""Every cache wvwasi writes, in one place: where it is, how big, how to empty it.

    <cache>/runtime/<key>/     frozen runtimes (freeze.py)
    <cache>/modules/           compiled services, shared by build (portable artefacts), dev,
                               run, exec and serve: `<wasm sha256>-<settings>[-portable].cwasm`
    <cache>/packages/          compressed package parts reused across builds (formats/_parts.py)
    ~/.cache/<identifier>/modules/   each installed app's own compile cache

`<cache>` is cache_dir() (`WVWASI_CACHE_DIR` overrides it). Compile caches are capped
(modules.cache_cap(), least recently used first out).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import filelock
import platformdirs

from wvwasi.runtime.modules import (
    WasmLoadError,
    artefact_problem,
    cache_cap,
    cache_entry,
    evict_lru,
    precompile,
    sha256_file,
)


def cache_dir() -> Path:
    """wvwasi's cache folder (`WVWASI_CACHE_DIR` overrides the per-user default)."""
    override = os.environ.get("WVWASI_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("wvwasi", False))


def cache_size(top: Path) -> int:
    """Bytes used by the files under `top`."""
    total = 0
    for root, _dirs, files in os.walk(top):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


#: How long a build waits for another process holding a cache lock before giving up.
LOCK_TIMEOUT = 600.0


@dataclass(frozen=True)
class Cache:
    """One cache folder and what it holds."""

    kind: str  # "runtime", "compiled", "packages", "app-compiled"
    path: Path
    bytes: int


def compiled_dir() -> Path:
    """The shared compile cache (pass as `compile_cache` to ServiceHost/App)."""
    return cache_dir()


def packages_dir() -> Path:
    return cache_dir() / "packages"


def lock(path: Path, timeout: float = LOCK_TIMEOUT) -> filelock.BaseFileLock:
    """A cross-process lock file beside `path` (a second build waits for the first)."""
    return filelock.FileLock(str(path) + ".lock", timeout=timeout)


def cached_precompile(wasm: Path, fallback: Path) -> Path:
    """`modules.precompile(wasm)` through the shared compile cache: the cached portable
    artefact if it is intact, else compiled into the cache. A cache folder that cannot be
    written (read-only, full) falls back to compiling into `fallback`; a damaged entry is
    compiled again; a module that does not compile leaves nothing behind."""
    sha = sha256_file(wasm)
    entry = cache_entry(compiled_dir(), sha, portable=True)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with lock(entry):
            if artefact_problem(entry, sha) is None:
                os.utime(entry)
                return entry
            precompile(wasm, entry)
        evict_lru(entry.parent, cache_cap(), keep=entry)
        return entry
    except WasmLoadError:
        raise
    except (OSError, filelock.Timeout):
        return precompile(wasm, fallback)


def pack_wasm(wasm: Path, dest: Path) -> None:
    """`wasm` gzip-compressed as `dest`, the compressed copy cached by the wasm's SHA-256 (a
    69 MB service is compressed once, not per build). Deterministic: no name, mtime 0."""
    sha = sha256_file(wasm)
    entry = packages_dir() / f"wasm-{sha}.gz"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if entry.is_file() and _gunzip_sha256(entry) == sha:
        shutil.copyfile(entry, dest)
        return
    with open(wasm, "rb") as src, open(dest, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        shutil.copyfileobj(src, gz, 1 << 20)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dest, tmp)
        os.replace(tmp, entry)
    except OSError:  # a read-only or full cache only costs the next build the compression
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _gunzip_sha256(path: Path) -> str | None:
    """SHA-256 of a cached `.gz`'s content (a damaged entry is never reused)."""
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return digest.hexdigest()


def app_compile_caches() -> Iterator[Path]:
    """Installed apps' and old dev runs' own compile caches (`~/.cache/<identifier>/modules`)."""
    base = Path(platformdirs.user_cache_dir())
    if not base.is_dir():
        return
    own = cache_dir().resolve()
    for entry in sorted(base.iterdir()):
        modules = entry / "modules"
        try:
            if entry.resolve() != own and any(modules.glob("*.cwasm.json")):
                yield modules
        except OSError:
            continue


def caches() -> list[Cache]:
    """Every cache wvwasi writes, with its size in bytes."""
    top = cache_dir()
    found = [Cache("runtime", p, cache_size(p))
             for p in sorted((top / "runtime").glob("*")) if p.is_dir()]
    for kind, path in (("compiled", top / "modules"), ("packages", packages_dir())):
        if path.is_dir():
            found.append(Cache(kind, path, cache_size(path)))
    found += [Cache("app-compiled", p, cache_size(p)) for p in app_compile_caches()]
    return found


def clean(*, runtime: bool = True, compiled: bool = True) -> int:
    """Empty the chosen caches (package parts go with the runtime); returns the bytes freed."""
    freed = 0
    for cache in caches():
        if (cache.kind in ("runtime", "packages") and runtime) or \
                (cache.kind in ("compiled", "app-compiled") and compiled):
            freed += cache.bytes
            shutil.rmtree(cache.path, ignore_errors=True)
    return freed

"""Every cache wvwasi writes, in one place: where it is, how big, how to empty it.

    <cache>/runtime/<key>/     frozen runtimes (freeze.py)
    <cache>/modules/           compiled services, shared by build (portable artefacts), dev,
                               run, exec and serve: `<wasm sha256>-<settings>[-portable].cwasm`
    <cache>/modules-digests/   each entry's SHA-256, apart from the entries (modules.digest_path)
    <cache>/packages/          compressed package parts reused across builds (formats/_parts.py)
    <cache>/windows/           the Windows runtime's cross-freeze: the checked Windows CPython,
                               its wheels and wvwasi's Wine prefix (wincross.py)
    ~/.cache/wvwasi-code/<identifier>/modules/   each installed app's own compile cache
                               (beside its onefile extraction: runtime/paths.py, code_root)

`<cache>` is cache_dir() (`WVWASI_CACHE_DIR` overrides it). Compile caches are capped
(modules.cache_cap(), least recently used first out).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import filelock
import platformdirs

from wvwasi.runtime.host.modules import (
    DIGESTS_FOLDER,
    WasmLoadError,
    artefact_problem,
    cache_cap,
    cache_entry,
    entry_digest,
    evict_lru,
    header_path,
    precompile,
    sha256_file,
)
from wvwasi.runtime.paths import build_cache_dir, code_root


def cache_dir() -> Path:
    """wvwasi's cache folder (`WVWASI_CACHE_DIR` overrides the per-user default)."""
    return build_cache_dir()


def cache_size(top: Path) -> int:
    """Bytes used by the files under `top`."""
    total = 0
    for root, _dirs, files in os.walk(top):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


#: Size cap of the package parts cache (least recently used out first).
PACKAGES_CAP = 2 << 30
#: How long a build waits for another process holding a cache lock before giving up.
LOCK_TIMEOUT = 600.0


@dataclass(frozen=True)
class Cache:
    """One cache folder and what it holds."""

    kind: str  # "runtime", "compiled", "packages", "app-compiled", "windows-python",
    # "windows-wheels", "wine-prefix"
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
    """`modules.precompile(wasm)` through the shared compile cache, as the build's own artefact
    `fallback`: the cached portable artefact, hard-linked (or copied) there and then checked
    against the digest the cache keeps apart from its entries (so what is checked is what is
    staged), else compiled into the cache first. A damaged, planted or special entry is compiled
    again; a cache folder that cannot be written (read-only, full) only costs the compile; a
    module that does not compile leaves nothing behind."""
    sha = sha256_file(wasm)
    entry = cache_entry(compiled_dir(), sha, portable=True)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with lock(entry):
            if _take(entry, sha, fallback):
                os.utime(entry)
            else:
                precompile(wasm, entry, cached=True)
                if not _take(entry, sha, fallback):
                    raise OSError(f"{entry} changed while it was being used")
        evict_lru(entry.parent, cache_cap(), keep=entry)
        return fallback
    except WasmLoadError:
        raise
    except (OSError, filelock.Timeout):
        return precompile(wasm, fallback)


def _take(entry: Path, wasm_sha256: str, dest: Path) -> bool:
    """Make `dest` the compile cache's `entry` (+ sidecar): hard links (else copies), made
    readable by every user and writable by us alone (staged as they are: shipped modes; this
    raises OSError on a file another user planted), and only then compared with the entry's
    digest kept apart, so the entry cannot change between the check and the staging."""
    pairs = ((entry, dest), (header_path(entry), header_path(dest)))
    for src, out in pairs:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        try:
            os.link(src, out)  # not followed: a planted symlink stays one and is refused
        except FileNotFoundError:
            return False
        except OSError:
            try:
                shutil.copyfile(src, out, follow_symlinks=False)
            except (OSError, shutil.SpecialFileError):
                return False
    if not any(out.is_symlink() for _src, out in pairs):
        for _src, out in pairs:
            out.chmod(0o644)
        if artefact_problem(dest, wasm_sha256, entry_digest(entry)) is None:
            return True
    for _src, out in pairs:
        out.unlink(missing_ok=True)
    return False


#: One lock per blob name being made: formats built at once that need the same blob (the deb
#: and the rpm share a big artefact's compressed part) make it once.
_making: dict[str, threading.Lock] = {}
_making_guard = threading.Lock()


def cached_blob(name: str, make: Callable[[], bytes]) -> bytes:
    """`make()`'s bytes, kept in the package parts cache under `name` (which must identify the
    content, e.g. by its SHA-256). Entries start with their own SHA-256: a damaged one is made
    again. A cache that cannot be written only costs the next build the work."""
    with _making_guard:
        making = _making.setdefault(name, threading.Lock())
    with making:
        return _cached_blob(name, make)


def _cached_blob(name: str, make: Callable[[], bytes]) -> bytes:
    entry = packages_dir() / name
    with contextlib.suppress(OSError):
        stored = entry.read_bytes()
        if hashlib.sha256(stored[32:]).digest() == stored[:32]:
            os.utime(entry)
            return stored[32:]
    blob = make()
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(hashlib.sha256(blob).digest() + blob)
        os.replace(tmp, entry)
        evict_files(entry.parent, PACKAGES_CAP, keep=entry)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return blob


def evict_files(folder: Path, cap: int, keep: Path) -> None:
    """Remove the least recently used files of `folder` until it holds at most `cap` bytes."""
    files = []
    for p in folder.iterdir():
        with contextlib.suppress(OSError):
            if not p.name.startswith(".") and p.is_file():
                st = p.stat()
                files.append((st.st_mtime, st.st_size, p))
    total = sum(size for _m, size, _p in files)
    for _mtime, size, path in sorted(files):
        if total <= cap:
            break
        if path != keep:
            path.unlink(missing_ok=True)
            total -= size


def pack_wasm(wasm: Path, dest: Path) -> None:
    """`wasm` gzip-compressed as `dest` (no name, mtime 0: deterministic), compressed once per
    SHA-256 of the `.wasm` (a 69 MB service is not compressed again per build)."""
    name = f"wasm-{sha256_file(wasm)}.gz"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(cached_blob(name, lambda: gzip.compress(wasm.read_bytes(), 6, mtime=0)))


def app_compile_caches() -> Iterator[Path]:
    """Installed apps' own compile caches (`~/.cache/wvwasi-code/<identifier>/modules`, and
    `~/.cache/<identifier>/modules` where older versions kept them)."""
    own = cache_dir().resolve()
    for base in (code_root(), Path(platformdirs.user_cache_dir())):
        if not base.is_dir():
            continue
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
    windows = top / "windows"
    for kind, paths in (("windows-python", windows.glob("python-*")),
                        ("windows-wheels", [windows / "wheels"]),
                        ("wine-prefix", [windows / "prefix"])):
        found += [Cache(kind, p, cache_size(p)) for p in sorted(paths) if p.is_dir()]
    return found


def clean(*, runtime: bool = True, compiled: bool = True) -> int:
    """Empty the chosen caches (package parts and the Windows cross-freeze's CPython, wheels and
    Wine prefix go with the runtime; both: all of wvwasi's cache folder but its build locks);
    returns the bytes freed."""
    freed = 0
    for cache in caches():
        if (cache.kind not in ("compiled", "app-compiled") and runtime) or \
                (cache.kind in ("compiled", "app-compiled") and compiled):
            freed += cache.bytes
            shutil.rmtree(cache.path, ignore_errors=True)
            if cache.kind in ("compiled", "app-compiled"):  # its digests, kept beside it
                shutil.rmtree(cache.path.parent / DIGESTS_FOLDER, ignore_errors=True)
    with contextlib.suppress(OSError):  # the emptied folder of runtimes
        (cache_dir() / "runtime").rmdir()
    if runtime and compiled:  # everything else in wvwasi's folder too (wheels, leftovers)
        with contextlib.suppress(OSError):
            for entry in cache_dir().iterdir():
                if entry.name == "locks":  # a build running now holds its lock there
                    continue
                freed += cache_size(entry) if entry.is_dir() else entry.stat().st_size
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
    return freed

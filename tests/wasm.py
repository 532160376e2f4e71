"""Build the C test fixtures (tests/fixtures/c/*.c) into WASI modules with Debian's clang.

Each module is cached in tests/.fixtures/ under a name carrying a hash of its sources, the flags
and the compiler version, so a rerun with nothing changed compiles nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SOURCE_DIR = Path(__file__).parent / "fixtures" / "c"
BUILD_DIR = Path(__file__).parent / ".fixtures"
CLANG = "clang"
#: The headers wvwasi ships for services (`wvwasi info --include`), e.g. <wvwasi/net.h>.
INCLUDE_DIR = Path(__file__).resolve().parents[1] / "wvwasi" / "include"
FLAGS = ("--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-Wall", "-Werror", "-Wl,--strip-all",
         f"-I{INCLUDE_DIR}")
APT_HINT = "apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32"
WASI_LIBC = Path("/usr/lib/wasm32-wasi/libc.a")


class ToolchainError(RuntimeError):
    """The WASI C toolchain is missing or a fixture failed to compile."""


def _check_toolchain() -> str:
    """Return the compiler's version line, or raise naming the packages to install."""
    if shutil.which(CLANG) is None:
        raise ToolchainError(f"clang is not installed; run: {APT_HINT}")
    if not WASI_LIBC.is_file():
        raise ToolchainError(f"wasi-libc is missing ({WASI_LIBC}); run: {APT_HINT}")
    out = subprocess.run([CLANG, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0]


def _cache_key(source: Path, compiler: str) -> str:
    digest = hashlib.sha256(compiler.encode())
    digest.update("\0".join(FLAGS).encode())
    # Fixtures may include the shared headers beside them: they are part of every key.
    for path in [source, *sorted(SOURCE_DIR.glob("*.h")), *sorted(INCLUDE_DIR.rglob("*.h"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _compile(source: Path, out: Path) -> None:
    """Compile one source to `out` atomically (a failed build leaves nothing behind)."""
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{source.stem}-", suffix=".wasm")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        proc = subprocess.run(
            [CLANG, *FLAGS, str(source), "-o", str(tmp)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            hint = f"\n(is the WASI toolchain complete? {APT_HINT})" if "cannot find" in (
                proc.stderr
            ) or "not found" in proc.stderr else ""
            raise ToolchainError(f"{source}: clang failed:\n{proc.stderr.strip()}{hint}")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def build_fixtures(sources: Iterable[Path] | None = None, jobs: int = 2) -> dict[str, Path]:
    """Compile every fixture that is not cached yet; return {name: wasm path}. With
    `WVWASI_PREBUILT_FIXTURES` set (a folder of NAME.wasm built on Linux: the tests that run
    under the Windows CPython in Wine, tests/test_windows_pytest.py), those are used as they are."""
    prebuilt = os.environ.get("WVWASI_PREBUILT_FIXTURES")
    if prebuilt:
        return {p.stem: p for p in sorted(Path(prebuilt).glob("*.wasm"))}
    compiler = _check_toolchain()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    sources = sorted(sources if sources is not None else SOURCE_DIR.glob("*.c"))
    built: dict[str, Path] = {}
    todo: list[tuple[Path, Path]] = []
    for source in sources:
        out = BUILD_DIR / f"{source.stem}-{_cache_key(source, compiler)}.wasm"
        built[source.stem] = out
        if not out.is_file():
            todo.append((source, out))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(_compile, src, out) for src, out in todo]:
            future.result()
    _remove_stale(set(built.values()))
    return built


def _remove_stale(keep: set[Path]) -> None:
    """Delete cached modules of fixtures that changed since (their key no longer matches)."""
    stems = {p.name.rsplit("-", 1)[0] for p in keep}
    for path in BUILD_DIR.glob("*.wasm"):
        if path not in keep and path.name.rsplit("-", 1)[0] in stems:
            path.unlink(missing_ok=True)

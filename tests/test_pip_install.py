"""wvwasi as users install it: the wheel and sdist built from this checkout, the wheel installed
(not editable) into a fresh virtualenv with the lock file's versions.

With only the base install, every command's `--help` and a real use of each work, and those that
need a window backend say in one line which extra to install. With `[gtk]` added, `wvwasi new`
-> `wvwasi build --format dir` -> the app's `--self-test` under Xvfb (freezing in that venv,
with a cache of its own)."""

from __future__ import annotations

import http.cookiejar
import os
import signal
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from build_helpers import ROOT, self_test
from xvfb import xvfb

from wvwasi import __version__
from wvwasi.packager.cli import COMMANDS

#: Files users need that only package data brings (checked in the wheel and the sdist).
PACKAGE_DATA = ("constraints.txt", "runtime/js/wvwasi.js", "templates/new/c/wvwasi.toml",
                "templates/new/rust/tools/rustc-wasi", "templates/new/cli/examples/bits.smt2",
                "templates/runtime.spec")
WINDOW_ERROR = ("the GTK webview cannot load (No module named 'gi'): install PyGObject "
                "(pip install 'wvwasi[gtk]')")


@dataclass(frozen=True)
class Venv:
    """A fresh virtualenv with the wheel installed; `cache` is its own wvwasi cache."""

    root: Path
    wheel: Path
    work: Path

    def wvwasi(self, *args: str | Path, timeout: float = 300,
               **env: str) -> subprocess.CompletedProcess[str]:
        """Run the venv's `wvwasi` console script in `work`; no output may be a traceback."""
        proc = subprocess.run(
            [self.root / "bin" / "wvwasi", *map(str, args)], cwd=self.work, capture_output=True,
            text=True, timeout=timeout, env=self.env(**env), stdin=subprocess.DEVNULL)
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        return proc

    def env(self, **extra: str) -> dict[str, str]:
        """This environment without the development venv, plus the venv's bin/ and `extra`."""
        dev = str(Path(sys.prefix))
        path = [str(self.root / "bin")] + [
            p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(dev)]
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        return {**env, "PATH": os.pathsep.join(path), "WVWASI_CACHE_DIR": str(self.work / "cache"),
                **extra}

    def pip_install(self, requirement: str) -> None:
        subprocess.run([self.root / "bin" / "python", "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "-c", ROOT / "wvwasi" / "constraints.txt",
                        requirement], check=True, timeout=900)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel and sdist `python -m build` makes from a copy of the checkout's files."""
    tmp = tmp_path_factory.mktemp("dists")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    src = tmp / "src"
    for rel in files:
        if (ROOT / rel).is_file() and not rel.startswith("tests/.fixtures/"):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((ROOT / rel).read_bytes())
    subprocess.run([sys.executable, "-m", "build", "--outdir", tmp / "dist", src], check=True,
                   capture_output=True, timeout=600)
    (wheel,) = (tmp / "dist").glob("wvwasi-*.whl")
    (sdist,) = (tmp / "dist").glob("wvwasi-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def venv(dists: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv with only the base install (no window backend)."""
    tmp = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", tmp / "venv"], check=True)
    env = Venv(tmp / "venv", dists["wheel"], tmp / "work")
    env.work.mkdir()
    env.pip_install(str(dists["wheel"]))
    return env


def test_wheel_and_sdist_carry_the_package_data(dists: dict[str, Path]):
    wheel_names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    with tarfile.open(dists["sdist"]) as sdist:
        sdist_names = set(sdist.getnames())
    top = f"wvwasi-{__version__}/"
    for rel in PACKAGE_DATA:
        assert f"wvwasi/{rel}" in wheel_names, rel
        source = {"runtime": "runtime", "templates": "templates"}.get(rel.split("/")[0], "wvwasi")
        in_sdist = rel if source != "wvwasi" else f"wvwasi/{rel}"
        assert top + in_sdist in sdist_names, rel
    metadata = zipfile.ZipFile(dists["wheel"]).read(
        f"wvwasi-{__version__}.dist-info/METADATA").decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert not [r for r in requires if "==" in r.split(";")[0]], requires  # ranges, not pins
    assert "Requires-Dist: wasmtime<50.1,>=50.0.1" in requires
    assert any("PyGObject" in r and 'extra == "gtk"' in r for r in requires)


def test_base_install_runs_every_command(venv: Venv):
    """Only the base install: `--help` and a real use of every command."""
    imports = subprocess.run([venv.root / "bin" / "python", "-c", "import gi"],
                             capture_output=True, text=True)
    assert "No module named 'gi'" in imports.stderr  # really no window backend
    assert venv.wvwasi("--version").stdout == f"wvwasi {__version__}\n"
    top_help = venv.wvwasi("--help").stdout
    for command, example in COMMANDS.items():
        assert f"    {command} " in top_help
        proc = venv.wvwasi(command, "--help")
        assert proc.returncode == 0 and f"example: {example}" in proc.stdout, command

    new = venv.wvwasi("new", "Hello")
    assert new.returncode == 0 and new.stdout.startswith("created hello\n"), new.stderr
    check = venv.wvwasi("check", "hello")
    assert check.returncode == 0 and check.stdout.startswith("ok: Hello 0.1.0"), check.stderr
    ran = subprocess.run([venv.root / "bin" / "wvwasi", "exec", "greet", "--project", "hello"],
                         input="Ada\n", capture_output=True, text=True, cwd=venv.work,
                         env=venv.env(), timeout=120)
    assert (ran.returncode, ran.stdout) == (0, "Hello, Ada!\n"), ran.stderr
    assert _serve_page(venv).count("<title>Hello</title>") == 1
    for command in ("run", "dev"):
        proc = venv.wvwasi(command, "hello")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"error: {WINDOW_ERROR}")
        assert len(proc.stderr.strip().splitlines()) == 1
    build = venv.wvwasi("build", "hello", "--format", "dir")
    assert build.returncode == 1
    assert build.stderr.strip().splitlines()[-1] == (
        "error: freeze: the gtk runtime needs PyGObject: pip install 'wvwasi[gtk]'")
    ci = venv.wvwasi("ci", "github", "hello")
    assert ci.returncode == 0 and (venv.work / "hello/.github/workflows/release.yml").is_file()
    info = venv.wvwasi("info")
    assert info.returncode == 0 and "PyGObject -" in info.stdout
    assert f"gtk      {WINDOW_ERROR}" in info.stdout
    (venv.work / "cache" / "leftover").mkdir(parents=True, exist_ok=True)
    clean = venv.wvwasi("clean")
    assert clean.returncode == 0 and clean.stdout.startswith("freed ")
    assert not (venv.work / "cache" / "leftover").exists()


def _serve_page(venv: Venv) -> str:
    """`wvwasi serve hello`: the page its launch URL opens; then Ctrl+C stops it."""
    proc = subprocess.Popen([venv.root / "bin" / "wvwasi", "serve", "hello"], cwd=venv.work,
                            env=venv.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("Serving Hello at http://127.0.0.1:"), first + proc.stderr.read()
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with opener.open(first.split()[-1], timeout=30) as response:
            page = response.read().decode()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and out.rstrip().endswith("Stopped."), err
        return page
    finally:
        proc.kill()
        proc.wait()


def test_gtk_extra_builds_an_app_that_passes_its_self_test(venv: Venv):
    """`pip install wvwasi[gtk]` -> new -> build --format dir -> --self-test (fresh freeze)."""
    venv.pip_install(f"{venv.wheel}[gtk]")
    venv.wvwasi("new", "Piped App")
    proc = venv.wvwasi("build", "piped-app", "--format", "dir", timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "freezing the linux gtk runtime" in proc.stderr  # its own cache: PyInstaller ran here
    (app,) = (venv.work / "piped-app" / "dist").glob("piped-app-*")
    with xvfb() as display:
        status, report = self_test(app / "piped-app", display)
    assert status == 0 and report["ok"], report
    assert report["app_checks"]["greet"] == {"ok": True, "detail": "Hello, wvwasi!"}

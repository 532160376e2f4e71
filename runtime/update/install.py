"""Installing a verified update over the running app (docs/update.md, "Installing").

How depends on how the app was installed (`detect()`):
- `targz` (an unpacked tar.gz or `dir` folder) and `app` (a macOS bundle, from `.app.tar.gz`):
  the archive is unpacked beside the app folder (the bundle),
  the new folder's `--self-test=headless` must pass, then the two folders swap in one
  `renameat2(RENAME_EXCHANGE)` (two renames where that is missing) and the new one must answer
  `--version` in place, else they swap back; the old folder is removed last.
- `onefile` (Linux's single file; its launcher says where it is in $WVWASI_ONEFILE): the new file
  is written beside it, passes its self-test (with its own cache folder), and is renamed over it.
- `deb` / `rpm` (in /opt/<slug>, which only root may write, and owned by that package by dpkg's
  or rpm's database; else it is a `targz`): downloaded into a private temporary folder, then
  `dpkg -i` / `rpm -U` through ELEVATE (pkexec) unless already root.
- `nsis` / `msi` (Windows): the setup runs after the app exits, started detached: the NSIS
  setup in `/UPDATE` mode waits itself for the app's executable to be writable (up to 60 s);
  for an MSI, a cmd.exe script (MSI_SCRIPT) waits so, then runs msiexec. Either starts the new
  version when `request_relaunch()` asked for it before the app exited.
A killed update leaves the old app or the new one in place, never half of either; its leftovers
(`.<folder>.update-*` beside the app) are removed by the next check. One update at a time: an
flock on the app folder (or file) itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wvwasi.runtime.manifest import MANIFEST_NAME, tomllib
from wvwasi.runtime.update.versions import package_version

#: The new version's `--self-test=headless` (starts every service and the bridge).
SELF_TEST_TIMEOUT = 180.0
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class InstallError(Exception):
    """An update that could not be installed (the installed app is unchanged); one line."""


@dataclass(frozen=True)
class Installation:
    """How and where this app is installed."""

    bundle: str  # targz, onefile, deb, rpm, nsis, msi, app (latest.json's `<os>-<arch>-<bundle>`)
    path: Path  # what an update replaces: the app folder, the onefile, the .app
    executable: Path  # the app's executable (in `path`)


def detect(executable: Path) -> Installation:
    """How the app whose frozen executable is `executable` was installed."""
    folder = executable.parent
    onefile = os.environ.get("WVWASI_ONEFILE")
    if onefile and Path(onefile).is_file():
        return Installation("onefile", Path(onefile), executable)
    if sys.platform == "darwin" and folder.name == "MacOS" and folder.parent.name == "Contents":
        return Installation("app", folder.parent.parent, executable)
    if sys.platform == "win32":
        return Installation(windows_bundle(folder), folder, executable)
    if folder.parent == Path("/opt"):  # /opt/<slug>: where the deb and rpm install it
        if Path(f"/var/lib/dpkg/info/{folder.name}.list").is_file():
            return Installation("deb", folder, executable)
        if _rpm_owns(folder):
            return Installation("rpm", folder, executable)
    return Installation("targz", folder, executable)  # also a tar.gz unpacked into /opt


def _rpm_owns(folder: Path) -> bool:
    """Whether rpm's database says a package owns `folder` (not queried where there is no
    database: `rpm -q` would create an empty one, as Debian's rpm does in ~/.rpmdb)."""
    def rpm(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(["rpm", *args], capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None

    dbpath = rpm("-E", "%{_dbpath}")
    if dbpath is None or dbpath.returncode != 0 or not Path(dbpath.stdout.strip()).is_dir():
        return False
    owner = rpm("-q", "-f", str(folder))
    return owner is not None and owner.returncode == 0


@contextlib.contextmanager
def locked(inst: Installation) -> Iterator[None]:
    """Hold the update lock of `inst` (an flock on the app folder or file itself, POSIX) and
    remove what killed updates left; InstallError if another update holds it."""
    fd = None
    if sys.platform != "win32":
        import fcntl

        fd = os.open(inst.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InstallError("another update of this app is running") from None
    try:
        for old in inst.path.parent.glob(f".{inst.path.name}.update-*"):
            shutil.rmtree(old, ignore_errors=True)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def work_folder(inst: Installation) -> Path:
    """A new private folder beside what is replaced (same file system: renames are atomic);
    for deb and rpm, whose /opt folder only root may write and which the package manager
    installs, a private temporary folder."""
    if inst.bundle in ("deb", "rpm"):
        return Path(tempfile.mkdtemp(prefix=f"{inst.path.name}.update-"))
    try:
        work = inst.path.parent / f".{inst.path.name}.update-{os.getpid()}"
        work.mkdir(mode=0o700)
    except OSError as e:
        raise InstallError(f"cannot write beside {inst.path} ({e.strerror}): install the "
                           "update where the app may write") from None
    return work


def install(inst: Installation, artefact: Path, version: str, identifier: str,
            install_mode: str = "passive") -> None:
    """Install the verified `artefact` of `version`; InstallError if it cannot be."""
    if inst.bundle in ("targz", "app"):
        _install_folder(inst, artefact, version, identifier)
    elif inst.bundle == "onefile":
        _install_onefile(inst, artefact)
    elif inst.bundle in ("deb", "rpm"):
        command = [*PACKAGE_INSTALL[inst.bundle], str(artefact)]
        privileged_command(command)  # no root and no pkexec: said first
        _check_package(inst, artefact, version)
        _run_privileged(command)
    elif inst.bundle in ("nsis", "msi"):
        _start_windows_installer(inst, artefact, install_mode)
    else:
        raise InstallError(f"updating a {inst.bundle} installation is not supported: "
                           "download the new version by hand")


def _install_folder(inst: Installation, archive: Path, version: str, identifier: str) -> None:
    work = archive.parent.parent
    unpacked = work / "new"
    unpacked.mkdir()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tops = {m.name.split("/", 1)[0] for m in tar.getmembers()}
            if len(tops) != 1:
                raise InstallError("the update archive does not hold one app folder")
            tar.extractall(unpacked, filter="data")  # no links out, no devices, no absolute
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InstallError(f"cannot unpack the update: {e}") from None
    new = unpacked / tops.pop()
    _check_payload(new / ("Contents/Resources/app" if inst.bundle == "app" else "app"),
                   version, identifier)
    exe = new / inst.executable.relative_to(inst.path)  # Contents/MacOS/<exe> in a .app
    if not exe.is_file():
        raise InstallError(f"the update has no {exe.relative_to(new)}")
    self_test(exe)
    exchange(new, inst.path)  # `new` now holds the old app
    try:
        _answers_version(inst.executable, version)
    except InstallError:
        exchange(new, inst.path)  # back
        raise
    shutil.rmtree(new, ignore_errors=True)


def _install_onefile(inst: Installation, new: Path) -> None:
    new.chmod(0o755)
    cache = new.parent.parent / "cache"
    cache.mkdir()
    self_test(new, {"XDG_CACHE_HOME": str(cache)})
    shutil.rmtree(cache, ignore_errors=True)
    with contextlib.suppress(OSError):  # keep the old file's mode
        new.chmod(inst.path.stat().st_mode & 0o7777)
    try:
        os.replace(new, inst.path)
    except OSError as e:
        raise InstallError(f"cannot replace {inst.path}: {e.strerror}") from None


def _check_payload(payload: Path, version: str, identifier: str) -> None:
    """The unpacked app must be this app, in the version latest.json announced."""
    try:
        app = tomllib.loads((payload / MANIFEST_NAME).read_text(encoding="utf-8"))["app"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InstallError("the update holds no readable app manifest") from None
    if app.get("identifier") != identifier:
        raise InstallError(f"the update is another app ({app.get('identifier')!r}, not "
                           f"{identifier!r})")
    if app.get("version") != version:
        raise InstallError(f"the update is version {app.get('version')!r}, not the {version} "
                           "latest.json announced")


def _run(command: list[str], what: str, timeout: float, env: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `command`; InstallError naming `what` if it cannot run or (`check`) fails (its last
    line)."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InstallError(f"{what} did not run: {e}") from None
    if check and out.returncode != 0:
        last = (out.stderr.strip() or out.stdout.strip()).splitlines()[-1:] or [""]
        raise InstallError(f"{what} failed (status {out.returncode}): {last[0][:300]}")
    return out


def self_test(executable: Path, env: dict[str, str] | None = None) -> None:
    """Run the new version's `--self-test=headless`; InstallError unless it passes."""
    _run([str(executable), "--self-test=headless"], "the new version's self-test",
         SELF_TEST_TIMEOUT, {**os.environ, **(env or {})})


def _answers_version(executable: Path, version: str) -> None:
    out = _run([str(executable), "--version"], "the new version in place", 60)
    if not out.stdout.strip().endswith(f" {version}"):
        raise InstallError(f"the new version in place says {out.stdout.strip()!r}")


def exchange(a: Path, b: Path) -> None:
    """Swap two folders: atomically where renameat2 exists (Linux), else with two renames."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = getattr(libc, "renameat2", None)
        if renameat2 is not None:
            if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                         _RENAME_EXCHANGE) == 0:
                return
            err = ctypes.get_errno()
            if err not in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: fall back
                raise InstallError(f"cannot swap {b} for the new version: {os.strerror(err)}")
    temp = a.with_name(a.name + ".swap")
    try:
        os.rename(b, temp)
        try:
            os.rename(a, b)
        except OSError:
            os.rename(temp, b)
            raise
        os.rename(temp, a)
    except OSError as e:
        raise InstallError(f"cannot swap {b} for the new version: {e.strerror}") from None


#: How an update's package is installed. wvwasi's rpm has no OpenPGP signature: it was
#: verified already (minisign, the whole file), and rpm 6's default (Fedora 45's:
#: `%_pkgverify_level all`) refuses unsigned packages; `--nosignature` keeps rpm's digests.
PACKAGE_INSTALL = {"deb": ["dpkg", "-i"], "rpm": ["rpm", "-U", "--oldpackage", "--nosignature"]}
#: What a package says it is: its name and version (deb: `0.2.0~beta.1`; rpm: without release).
PACKAGE_QUERY = {
    "deb": ["dpkg-deb", "--showformat=${Package} ${Version}", "--show"],
    "rpm": ["rpm", "-qp", "--nosignature", "--nodigest", "--qf", "%{NAME} %{VERSION}"],
}


def _check_package(inst: Installation, artefact: Path, version: str) -> None:
    """InstallError unless the signed package is this app's (`/opt/<name>`) at the version
    latest.json announced: a signature says who made the bytes, not which of their packages they
    are, and dpkg -i and rpm -U --oldpackage install an older one as readily (a downgrade)."""
    expected = f"{inst.path.name} {package_version(version)}"
    out = _run([*PACKAGE_QUERY[inst.bundle], str(artefact)], f"reading the {inst.bundle}", 60)
    if out.stdout.strip() != expected:
        raise InstallError(f"the update's {inst.bundle} is {out.stdout.strip()[:200]!r}, not "
                           f"{expected!r} as announced: the update was not installed")


#: How a package is installed by an app that does not run as root (polkit asks the user).
ELEVATE = ["pkexec"]


def privileged_command(command: list[str]) -> list[str]:
    """`command` as run to install a package: as it is for root, else through ELEVATE."""
    if not hasattr(os, "geteuid") or os.geteuid() == 0:
        return command
    if shutil.which(ELEVATE[0]) is None:
        raise InstallError(f"installing a package needs root and {ELEVATE[0]} is missing: "
                           "run the update as root (`sudo APP --update`)")
    return [*ELEVATE, *command]


#: How long a package install as root waits while another installer holds the package
#: database's lock (dpkg and rpm fail at once then; through pkexec each try would ask again).
LOCK_WAIT = 120.0
#: pkexec's own exit statuses: 126, the user dismissed the authentication dialog; 127, not
#: authorized, or pkexec could not ask (no polkit authority, no authentication agent).
PKEXEC_REFUSED = (126, 127)


def _run_privileged(command: list[str]) -> None:
    what = " ".join(command[:2])  # dpkg -i, rpm -U
    command = privileged_command(command)
    elevated = command[0] == ELEVATE[0]
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        out = _run(command, what, 600, check=False)
        if out.returncode == 0:
            return
        if elevated and out.returncode in PKEXEC_REFUSED:
            first = next((line.strip() for line in out.stderr.splitlines() if line.strip()), "")
            raise InstallError(f"{ELEVATE[0]} did not run {what} as root (status "
                               f"{out.returncode}: {first[:200]}): the update was not installed")
        problem = package_error(out.stderr.strip() or out.stdout.strip())
        if elevated or "lock" not in problem or time.monotonic() > deadline:
            through = f" (through {ELEVATE[0]})" if elevated else ""
            raise InstallError(f"{what}{through} failed (status {out.returncode}): {problem}")
        time.sleep(1)


def package_error(text: str) -> str:
    """dpkg's or rpm's error in one line: the first line naming an error or a dependency
    problem, with the indented lines below it that give the causes (rpm's failed
    dependencies, dpkg's missing packages), else the last line."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if "error" in line.lower() or "dependency problems" in line), None)
    if start is None:
        return lines[-1][:600] if lines else ""
    summary = lines[start].strip()
    for line in lines[start + 1:]:
        if not line[:1].isspace():
            break
        summary += (" " if summary.endswith(":") else "; ") + line.strip()
    return summary if len(summary) <= 600 else summary[:599] + "…"


#: `[update] windows.install_mode` -> the NSIS setup's and msiexec's switches.
NSIS_MODES = {"passive": ["/S", "/UPDATE"], "quiet": ["/S", "/UPDATE"],
              "basic-ui": ["/UPDATE"]}
MSI_MODES = {"passive": ["/passive"], "quiet": ["/quiet"], "basic-ui": ["/qb"]}


def windows_installer_command(bundle: str, artefact: Path, mode: str) -> list[str]:
    """The command that installs a Windows update (run once the app has exited)."""
    if bundle == "nsis":
        return [str(artefact), *NSIS_MODES[mode]]
    return ["msiexec.exe", "/i", str(artefact), *MSI_MODES[mode], "/norestart"]


#: The file the `msi` format installs beside the app's executable: how `detect()` knows an
#: MSI installation (Windows Installer adds and removes it with the app's other files).
MSI_MARKER = "installed-with-msi.txt"


def windows_bundle(folder: Path) -> str:
    """How the Windows app in `folder` was installed: msi (its marker), nsis (its uninstaller)
    or zip (an unpacked folder, which does not update itself)."""
    if (folder / MSI_MARKER).is_file():
        return "msi"
    return "nsis" if (folder / "uninstall.exe").is_file() else "zip"


#: The file whose presence, once the setup has installed, makes it start the new version: made
#: by `request_relaunch()` in the setup's own folder (NSIS: `$EXEDIR\relaunch`).
RELAUNCH_FLAG = "relaunch"
#: How long the MSI script waits for the app to exit, in its 1 s steps (the NSIS setup: 60 s).
MSI_WAIT_STEPS = 60
#: Run by cmd.exe in the update's private folder; the paths come in its environment (no quoting
#: or code page issues). A running program cannot be opened for writing: appending the output
#: of `cmd /c exit 0` (nothing: the file is not changed) to the exe fails while the app runs,
#: and the command does not run. The errorlevel is set to 1 first and the redirections follow
#: the command because Wine's cmd (where this is tested) neither sets the errorlevel nor stops
#: `&&` when a redirection fails, and misreads a leading `2>nul`. After MSI_WAIT_STEPS it
#: exits with 5 and installs nothing, like the NSIS setup.
MSI_SCRIPT = rf"""@echo off
rem Written by the app's updater (wvwasi runtime/update/install.py): waits until the app has
rem exited, installs its update with msiexec, then starts it again if the app asked for that.
set tries=0
:wait
if not exist "%WVWASI_UPDATE_EXE%" goto install
cmd /d /c exit 1
cmd /d /c exit 0 >>"%WVWASI_UPDATE_EXE%" 2>nul
if not errorlevel 1 goto install
set /a tries+=1
if %tries% geq {MSI_WAIT_STEPS} exit /b 5
ping -n 2 127.0.0.1 >nul
goto wait
:install
msiexec.exe /i "%WVWASI_UPDATE_PACKAGE%" %WVWASI_UPDATE_SWITCHES%
set status=%errorlevel%
if %status%==3010 set status=0
if not %status%==0 exit /b %status%
if not exist "%WVWASI_UPDATE_RELAUNCH%" exit /b 0
cd /d "%WVWASI_UPDATE_FOLDER%"
start "" "%WVWASI_UPDATE_EXE%"
""".replace("\n", "\r\n")
#: The setups this process started (their folders), for `request_relaunch()`.
_started: list[Path] = []


def _start_windows_installer(inst: Installation, artefact: Path, mode: str) -> None:
    """Start the setup detached; it waits for the app to exit (the caller exits next). Its
    working folder is the update's (not the app folder, which the setup replaces)."""
    work = artefact.parent
    env = {**os.environ, "PYINSTALLER_RESET_ENVIRONMENT": "1"}  # the relaunched app: its own
    command = windows_installer_command(inst.bundle, artefact, mode)
    if inst.bundle == "msi":
        (work / "update.cmd").write_text(MSI_SCRIPT, encoding="ascii", newline="")
        env.update(WVWASI_UPDATE_EXE=str(inst.executable), WVWASI_UPDATE_PACKAGE=str(artefact),
                   WVWASI_UPDATE_SWITCHES=subprocess.list2cmdline(command[3:]),
                   WVWASI_UPDATE_RELAUNCH=str(work / RELAUNCH_FLAG),
                   WVWASI_UPDATE_FOLDER=str(inst.path))
        command = ["cmd.exe", "/d", "/c", "update.cmd"]  # relative: cmd /c's quote rules
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) | getattr(
        subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    try:
        subprocess.Popen(command, creationflags=flags, close_fds=True, cwd=work, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    except OSError as e:
        raise InstallError(f"cannot start the installer: {e}") from None
    _started.append(work)


def request_relaunch() -> bool:
    """Ask the Windows setup this process started to start the app once it has installed the
    update (the app exits next). False when it started none: the caller starts the app itself
    (on Windows it would start the OLD version, racing the setup that waits for it to exit)."""
    if not _started:
        return False
    try:
        (_started[-1] / RELAUNCH_FLAG).touch()
    except OSError:
        return False
    return True

"""Hostile services and pages against the host's path handling: symlinks planted in a writable
folder where another service's preopen or a grant lies, guest paths spelled to shadow a preopen,
NUL and `=` in args/env, and per-spawn `files` that would eat file descriptors.

Every attack runs a real guest (tests/fixtures/c/plant.c plants the links) through a real
ServiceHost, and every test also checks that the legitimate case still works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wvwasi.runtime.host import hostpath
from wvwasi.runtime.host.hostpath import openat2_available
from wvwasi.runtime.host.service_host import SpawnOptions
from wvwasi.runtime.host.spawn_options import MAX_GRANTS
from wvwasi.runtime.manifest import DEFAULT_FILES, Preopen, load_manifest

SECRET = "TOP SECRET outside every preopen\n"


def run(host: Any, name: str, *args: str, **options: Any) -> Any:
    return host.run_task(name, options=SpawnOptions(args=args, **options))


def plant(host: Any, *ops: str) -> list[str]:
    """Run the planting service; every op must have succeeded (the attack is set up)."""
    result = run(host, "planter", *ops)
    lines = result.stdout.decode().splitlines()
    assert result.exit_code == 0 and len(lines) == len(ops), result
    assert all(line.endswith(": OK") for line in lines), lines
    return lines


@pytest.fixture
def project(make_project: Callable[..., Path], tmp_path: Path) -> Path:
    """`planter` writes $APPDATA/shared; `reader` reads $APPDATA/shared/exports (nested);
    `picker` takes grants; `files` reads per-spawn files next to a manifest preopen /ro."""
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "hello.txt").write_text("manifest ro\n")
    (tmp_path / "secret.txt").write_text(SECRET)
    shared = {"guest": "/shared", "host": "$APPDATA/shared", "mode": "rw"}
    return make_project({
        "planter": {"source": "plant", "preopens": [shared]},
        "reader": {"source": "escape",
                   "preopens": [{"guest": "/exports", "host": "$APPDATA/shared/exports"}]},
        "picker": {"source": "escape", "user_grants": True,
                   "preopens": [{"guest": "/ro", "host": str(ro)}]},
        "files": {"source": "escape", "scratch": True,
                  "preopens": [{"guest": "/ro", "host": str(ro)}]},
        "many": {"source": "blockread", "kind": "dedicated",
                 "limits": {"files": 2000, "files_size": "1MiB"}},
        "env_args": {"source": "env_args", "args": ["--base"], "env": {"FIXED": "1"}},
        "homer": {"source": "escape", "preopens": [{"guest": "/photos", "host": "$HOME/photos"}]},
        "local": {"source": "escape", "preopens": [{"guest": "/data", "host": "data"}]},
    })


@pytest.fixture
def host(project: Path, make_host: Callable[..., Any]) -> Any:
    return make_host(load_manifest(project)).start()


def appdata(host: Any) -> Path:
    return host.paths.variable("APPDATA")


# --- item 1: a preopen nested in another service's writable folder -----------------------------


def test_the_kernel_here_resolves_beneath_with_openat2() -> None:
    assert openat2_available(), "openat2 missing: the tests below then cover the fallback only"


@pytest.fixture(params=["openat2", "verify"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with openat2, and again with the resolve-then-verify fallback."""
    if request.param == "verify":
        monkeypatch.setattr(hostpath, "_openat2_works", False)
    return str(request.param)


@pytest.mark.usefixtures("resolver")
def test_both_resolvers_refuse_a_planted_link_and_follow_one_inside(host: Any) -> None:
    plant(host, "m:/shared/real", "w:/shared/real/x.txt=inside", "s:real:/shared/exports")
    assert run(host, "reader", "r:/exports/x.txt").stdout == b"r /exports/x.txt: OK inside\n"
    plant(host, "u:/shared/exports", "s:../../../../../../../../etc:/shared/exports")
    with pytest.raises(PermissionError, match="leads out of"):
        run(host, "reader", "d:/exports")
    root = hostpath.Root.open(appdata(host))
    try:
        with pytest.raises(PermissionError):
            root.open_fd("shared/exports/passwd")
        fd = root.open_fd("shared/real/x.txt")
        assert os.read(fd, 100) == b"inside"
        os.close(fd)
    finally:
        root.close()


def test_a_nested_preopen_works_when_nothing_is_planted(host: Any) -> None:
    plant(host, "m:/shared/exports", "w:/shared/exports/hello.txt=from the planter")
    result = run(host, "reader", "r:/exports/hello.txt")
    assert result.stdout.decode() == "r /exports/hello.txt: OK from the planter\n"


@pytest.mark.parametrize("ops", [
    ["s:../../../../../../../../etc:/shared/exports"],  # the reported attack
    ["s:..:/shared/exports"],  # up into $APPDATA, outside the writable folder
    ["s:a:/shared/exports", "s:b:/shared/a", "s:../..:/shared/b"],  # a chain that ends outside
], ids=["etc", "parent", "chain"])
def test_a_link_planted_where_a_nested_preopen_lies_is_refused(host: Any, ops: list[str]) -> None:
    plant(host, *ops)
    with pytest.raises(PermissionError, match=r"preopen /exports: .* leads out of .*shared"):
        run(host, "reader", "r:/exports/passwd", "d:/exports")


def test_a_link_loop_where_a_nested_preopen_lies_is_a_clean_error(host: Any) -> None:
    plant(host, "s:loop2:/shared/exports", "s:exports:/shared/loop2")
    with pytest.raises(OSError, match=r"preopen /exports: cannot open host folder .*symbolic"):
        run(host, "reader", "d:/exports")
    plant(host, "u:/shared/exports", "m:/shared/exports")  # repaired: works again
    assert run(host, "reader", "d:/exports").stdout.decode().startswith("d /exports: OK")


def test_a_link_that_stays_inside_the_writable_folder_is_followed(host: Any) -> None:
    plant(host, "m:/shared/real", "w:/shared/real/x.txt=inside", "s:real:/shared/exports")
    out = run(host, "reader", "r:/exports/x.txt").stdout.decode()
    assert out == "r /exports/x.txt: OK inside\n"


def test_the_writable_folder_itself_replaced_by_a_link_is_refused(
    host: Any, tmp_path: Path
) -> None:
    """A local attacker (or a service with rw $APPDATA) swaps shared/ for a link out."""
    shared = appdata(host) / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    shared.rmdir()
    shared.symlink_to(tmp_path)
    (tmp_path / "exports").mkdir()
    with pytest.raises(PermissionError, match="leads out of"):
        run(host, "reader", "d:/exports")
    with pytest.raises(PermissionError, match="leads out of"):
        run(host, "planter", "w:/shared/x=1")


def test_a_link_swapped_in_during_spawns_never_lets_the_reader_out(host: Any) -> None:
    """The planter flips shared/exports between a folder link inside and a link out while the
    reader spawns again and again: each spawn is refused or sees the inside folder."""
    plant(host, "m:/shared/inside", "w:/shared/inside/who=inside", "s:inside:/shared/exports")
    planter = host.spawn("planter", SpawnOptions(
        args=("flip:/shared/exports:../../../../../../../../etc:inside:100000000",)), capture=True)
    try:
        for _ in range(150):
            assert planter.alive, (planter.wait(0), bytes(planter.stdout))
            try:
                out = run(host, "reader", "r:/exports/passwd", "r:/exports/who").stdout.decode()
            except (PermissionError, FileNotFoundError, OSError):
                continue  # caught the link out
            assert "root:" not in out, out
    finally:
        planter.terminate()
        planter.wait(30)


def test_a_grant_inside_a_writable_folder_is_opened_beneath_it(host: Any) -> None:
    plant(host, "m:/shared/picked", "w:/shared/picked/f.txt=picked")
    grant = Preopen(guest="/picked", host=str(appdata(host) / "shared" / "picked"))
    assert run(host, "picker", "r:/picked/f.txt", grants=(grant,)).stdout == (
        b"r /picked/f.txt: OK picked\n"
    )
    plant(host, "s:../../../../../../../../etc:/shared/picked2")
    evil = Preopen(guest="/picked", host=str(appdata(host) / "shared" / "picked2"))
    with pytest.raises(PermissionError, match="leads out of"):
        run(host, "picker", "r:/picked/passwd", grants=(evil,))


def test_the_users_own_links_are_followed_the_apps_folders_keep_theirs_inside(
    host: Any, project: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "f.txt").write_text("mounted elsewhere")
    home = host.paths.variable("HOME")
    home.mkdir(parents=True, exist_ok=True)
    (home / "photos").symlink_to(elsewhere)  # the user's own link: followed
    out = run(host, "homer", "r:/photos/f.txt").stdout
    assert out == b"r /photos/f.txt: OK mounted elsewhere\n"
    (project / "data").symlink_to(elsewhere)  # a link out of the project folder: refused
    with pytest.raises(PermissionError, match="leads out of"):
        run(host, "local", "r:/data/f.txt")
    (project / "data").unlink()
    (project / "data").mkdir()
    (project / "data" / "f.txt").write_text("in the project")
    assert run(host, "local", "r:/data/f.txt").stdout == b"r /data/f.txt: OK in the project\n"


# --- item 3: one normalizer for every guest-path comparison -------------------------------------


@pytest.mark.parametrize("guest", [
    "/ro/hello.txt", "//ro/hello.txt", "/./ro/hello.txt", "/ro//hello.txt", "/ro/../ro/hello.txt",
    "/x/../ro/hello.txt", "/ro", "/ro/", "//ro", "/ro/sub/deeper.txt",
])
def test_files_cannot_shadow_a_preopen_however_spelled(host: Any, guest: str) -> None:
    with pytest.raises(PermissionError, match="would shadow the preopen /ro"):
        run(host, "files", "r:/ro/hello.txt", files={guest: b"fake"})
    assert run(host, "files", "r:/ro/hello.txt").stdout == b"r /ro/hello.txt: OK manifest ro\n"


@pytest.mark.parametrize("guest", ["//scratch/x", "/scratch/", "/./scratch/x", "/scratch"])
def test_files_cannot_shadow_scratch(host: Any, guest: str) -> None:
    with pytest.raises(PermissionError, match="would shadow the scratch folder"):
        run(host, "files", "r:/scratch/x", files={guest: b"fake"}, scratch=True)


@pytest.mark.parametrize("guest", ["/ro", "//ro", "/./ro", "/ro/", "/ro/../ro", "/ro/sub", "/"])
def test_grants_cannot_shadow_a_preopen_however_spelled(
    host: Any, tmp_path: Path, guest: str
) -> None:
    fake = tmp_path / "fake"
    fake.mkdir(exist_ok=True)
    (fake / "hello.txt").write_text("fake\n")
    with pytest.raises((PermissionError, ValueError), match=r"shadow|must not be /"):
        run(host, "picker", "r:/ro/hello.txt", grants=(Preopen(guest=guest, host=str(fake)),))
    legit = Preopen(guest="//picked/", host=str(fake))  # normalized to /picked: fine
    out = run(host, "picker", "r:/picked/hello.txt", "r:/ro/hello.txt", grants=(legit,))
    assert out.stdout == b"r /picked/hello.txt: OK fake\nr /ro/hello.txt: OK manifest ro\n"


@pytest.mark.parametrize(("files", "why"), [
    ({"/../etc/passwd": b"x"}, "climbs above /"),
    ({"/in/../../x": b"x"}, "climbs above /"),
    ({"relative.txt": b"x"}, "not absolute"),
    ({"": b"x"}, "not absolute"),
    ({"/": b"x"}, "must not be /"),
    ({"/in/a\0b": b"x"}, "NUL"),
    ({"/in/a\\b": b"x"}, "backslash"),
    ({"/in/" + "a" * 300: b"x"}, "longer than 255"),
    ({"/in/\ud800": b"x"}, "UTF-8"),
])
def test_unsafe_file_paths_are_refused_cleanly(host: Any, files: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        run(host, "files", "r:/in/a", files=files)
    assert run(host, "files", "r:/in/a", files={"/in/a": b"ok"}).stdout == b"r /in/a: OK ok\n"


@pytest.mark.parametrize("files", [
    {"/in/a": b"1", "//in/a": b"2"},  # the same file twice
    {"/in/a": b"1", "/in/a/b": b"2"},  # a file inside a file
])
def test_files_that_collide_after_normalizing_are_refused(host: Any, files: dict) -> None:
    with pytest.raises(PermissionError, match="would shadow the file"):
        run(host, "files", "r:/in/a", files=files)


def test_files_are_placed_at_their_normalized_path_beside_the_preopens(host: Any) -> None:
    files = {"/in/./a.txt": b"A", "//deep/er/b.txt": b"B", "/x/../c.txt": b"C"}
    out = run(host, "files", "r:/in/a.txt", "r:/deep/er/b.txt", "r:/c.txt", "r:/ro/hello.txt",
              "w:/in/a.txt", files=files).stdout.decode().splitlines()
    assert out[:4] == ["r /in/a.txt: OK A", "r /deep/er/b.txt: OK B", "r /c.txt: OK C",
                       "r /ro/hello.txt: OK manifest ro"]
    assert not out[4].endswith("OK"), out  # still read-only


# --- item 11: NUL and '=' in args and env -------------------------------------------------------


@pytest.mark.parametrize(("options", "error", "why"), [
    ({"args": ("a\0b",)}, ValueError, r"args\[0\] must be a string without NUL"),
    ({"env": (("X", "a\0b"),)}, ValueError, "env X must be a string without NUL"),
    ({"env": (("FIXED=x", "1"),)}, ValueError, "env name 'FIXED=x' is invalid"),
    ({"env": (("A\0B", "1"),)}, ValueError, "is invalid"),
    ({"env": (("", "1"),)}, ValueError, "is invalid"),
    ({"env": (("FIXED", "2"),)}, PermissionError, "cannot be overridden"),
])
def test_bad_args_and_env_are_refused_not_cut(
    host: Any, options: dict, error: type, why: str
) -> None:
    with pytest.raises(error, match=why):
        host.run_task("env_args", options=SpawnOptions(**options))
    ok = host.run_task("env_args", options=SpawnOptions(args=("a b",), env=(("X", "y=z"),)))
    assert ok.stdout.decode().splitlines()[-3:] == ["arg[2]=a b", "env:FIXED=1", "env:X=y=z"]


# --- item 6: per-spawn files are bounded and hold one folder handle ------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_thousand_file_folders_hold_one_preopen(host: Any) -> None:
    files = {f"/d{i}/f.txt": b"x" for i in range(1000)}
    before = _fds()
    inst = host.spawn("many", SpawnOptions(files=files))
    try:
        assert inst.recv(30) is not None  # `waiting`: the guest runs with every file preopened
        held = _fds() - before
        assert held < 20, f"{held} fds held by one instance with 1000 file folders"
    finally:
        inst.terminate()
        inst.wait(30)


def test_files_over_the_bounds_are_refused(host: Any) -> None:
    too_many = {f"/in/{i}": b"" for i in range(DEFAULT_FILES + 1)}
    with pytest.raises(PermissionError, match=r"services\.files\.limits\.files = 256"):
        run(host, "files", files=too_many)
    at_bound = run(host, "files", "r:/in/0", files=dict(list(too_many.items())[:DEFAULT_FILES]))
    assert at_bound.stdout == b"r /in/0: OK \n", at_bound  # the empty file, read
    with pytest.raises(PermissionError, match=r"services\.many\.limits\.files_size = 1048576"):
        host.spawn("many", SpawnOptions(files={"/a": b"x" * (1 << 20), "/b": b"y"}))
    with pytest.raises(PermissionError, match="is not absolute"):
        run(host, "picker", grants=(Preopen(guest="/g", host="relative/folder"),))
    grants = tuple(Preopen(guest=f"/g{i}", host="/tmp") for i in range(MAX_GRANTS + 1))
    with pytest.raises(PermissionError, match=f"at most {MAX_GRANTS}"):
        run(host, "picker", grants=grants)


@pytest.mark.parametrize(("limits", "why"), [
    ({"files": 0}, r"limits\.files: expected an integer greater than 0"),
    ({"files": "many"}, r"limits\.files: expected an integer"),
    ({"files_size": "lots"}, r"limits\.files_size: expected a size"),
])
def test_bad_files_limits_name_the_key(
    make_project: Callable[..., Path], limits: dict, why: str
) -> None:
    from wvwasi.runtime.manifest import ManifestError

    project = make_project({"x": {"source": "readfile", "limits": limits}}, name="bad")
    with pytest.raises(ManifestError, match=why):
        load_manifest(project)


def test_spawns_out_of_fds_fail_cleanly_and_never_hang(project: Path, tmp_path: Path) -> None:
    """Under a small RLIMIT_NOFILE, spawn instances until the fds run out: every spawn either
    raises or ends with an Exited event, and the host closes (no thread stuck forever)."""
    script = textwrap.dedent(f"""
        import json, resource, threading
        from pathlib import Path
        from wvwasi.runtime.host.service_host import ServiceHost, SpawnOptions
        from wvwasi.runtime.manifest import load_manifest
        from wvwasi.runtime.paths import PathContext
        m = load_manifest({str(project)!r})
        dirs = {{v: Path({str(tmp_path)!r}) / "fd" / v.lower() for v in ("APPDATA", "CACHE")}}
        host = ServiceHost(m, paths=PathContext.for_app(m, base_dirs=dirs)).start()
        host.run_task("files")  # compiled before the limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))
        live, refused = [], []
        for i in range(40):
            try:
                live.append(host.spawn("many", SpawnOptions(files={{f"/d{{i}}/x": b"1"}})))
            except OSError as e:
                refused.append(str(e))
        for inst in live:
            inst.terminate()
        exits = [inst.wait(20) for inst in live]
        kinds = [e.error.kind if e and e.error else str(e) for e in exits]
        host.close()
        print(json.dumps({{"live": len(live), "refused": len(refused),
                          "ended": all(e is not None for e in exits),
                          "failed_start": kinds.count("start"),
                          "terminated": kinds.count("terminated"),
                          "threads": threading.active_count()}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["ended"], report
    assert report["live"] + report["refused"] == 40, report
    assert report["refused"] + report["failed_start"] > 0, report  # the fds did run out
    assert report["terminated"] > 0, report  # and the spawns before that ran
    assert report["threads"] == 1, report  # nothing left behind, nothing blocked


def test_a_spawn_failing_half_way_through_its_stdio_ends_instead_of_hanging(host: Any) -> None:
    """stdout is wired (its reader waits for wasmtime's end to close), then stderr fails: the
    instance must still end with a `start` error. (Fault injected: a folder where the stderr
    FIFO goes; out of fds it is wasmtime's open that fails at this point.)"""
    from wvwasi.runtime.host.instance import Instance

    inst = Instance(host._launch(host.service("many"), SpawnOptions(), False))
    (inst._dir / "stderr").mkdir()
    inst.start()
    exited = inst.wait(30)
    assert exited is not None, "the instance thread hangs after a half-wired stdio"
    assert exited.error is not None and exited.error.kind == "start", exited


def test_spawn_threads_end_after_refusals(host: Any) -> None:
    before = threading.active_count()
    for bad in ({"/in/a\0": b""}, {"/../x": b""}):
        with pytest.raises(ValueError):
            run(host, "files", files=bad)
    assert threading.active_count() <= before
    assert run(host, "files", "r:/in/a", files={"/in/a": b"fine"}).stdout == b"r /in/a: OK fine\n"

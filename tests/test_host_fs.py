"""What a service can touch: preopens (rw/ro), escapes out of them, per-spawn files, scratch,
grants, args and env."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wvwasi.runtime.host.service_host import SpawnOptions
from wvwasi.runtime.manifest import Preopen, load_manifest

REFUSED = {"EROFS", "EACCES", "EPERM", "ENOTCAPABLE"}
SECRET = "TOP SECRET host file\n"


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """tmp/sandbox/{data/, ro/, secret.txt}: only data/ and ro/ are preopened."""
    root = tmp_path / "sandbox"
    (root / "data").mkdir(parents=True)
    (root / "ro").mkdir()
    (root / "ro" / "existing.txt").write_text("original\n")
    (root / "secret.txt").write_text(SECRET)
    (root / "data" / "link_out").symlink_to(root)  # a folder symlink pointing out
    (root / "data" / "secret_link").symlink_to(root / "secret.txt")
    (root / "data" / "passwd_link").symlink_to("/etc/passwd")
    (root / "data" / "relative_link").symlink_to("../secret.txt")
    return root


@pytest.fixture
def host(
    sandbox: Path, make_project: Callable[..., Any], make_host: Callable[..., Any]
) -> Any:
    data = {"guest": "/data", "host": str(sandbox / "data"), "mode": "rw"}
    ro = {"guest": "/ro", "host": str(sandbox / "ro"), "mode": "ro"}
    project = make_project(
        {
            "write_rw": {"source": "write_rw", "preopens": [data]},
            "write_ro": {"source": "write_ro", "preopens": [ro]},
            "escape": {"source": "escape", "preopens": [data, ro]},
            "readfile": {"source": "readfile"},
            "scratchy": {"source": "write_rw", "scratch": True},
            "picker": {"source": "readfile", "user_grants": True},
            "env_args": {"source": "env_args", "args": ["--base"], "env": {"BASE": "1"}},
        }
    )
    return make_host(load_manifest(project)).start()


def run(host: Any, name: str, *args: str, **options: Any) -> Any:
    return host.run_task(name, options=SpawnOptions(args=args, **options))


def test_rw_preopen_write_is_visible_on_the_host(host: Any, sandbox: Path) -> None:
    result = run(host, "write_rw", "/data/out.txt", "written by the service ✓")
    assert (result.exit_code, result.stderr) == (0, b""), result
    assert result.stdout.decode() == "written by the service ✓"
    assert (sandbox / "data" / "out.txt").read_text() == "written by the service ✓"


@pytest.mark.parametrize("target", ["/ro/new.txt", "/ro/existing.txt"])
def test_ro_preopen_refuses_writes(host: Any, sandbox: Path, target: str) -> None:
    result = run(host, "write_ro", target)
    assert result.exit_code == 0, result
    verb, _, err = result.stdout.decode().strip().partition(": ")
    assert verb in ("open", "write") and err in REFUSED, result.stdout
    assert not (sandbox / "ro" / "new.txt").exists()
    assert (sandbox / "ro" / "existing.txt").read_text() == "original\n"


def test_escapes_out_of_preopens_all_fail(host: Any, sandbox: Path) -> None:
    ops = [
        "r:/data/../secret.txt",
        "r:/data/link_out/secret.txt",
        "r:/data/secret_link",
        "r:/data/relative_link",
        "r:/data/passwd_link",
        "r:/etc/passwd",
        "r:../secret.txt",
        "r:/data/../../../../etc/passwd",
        "d:/data/..",
        "d:/data/link_out",
        "d:/",
        "w:/data/../escaped.txt",
        "w:/data/link_out/escaped.txt",
        "w:/data/secret_link",
        "w:/data/relative_link",
        "w:/escaped.txt",
        "w:/ro/../escaped.txt",
        "s:/etc:/data/etc_link",
        "r:/data/etc_link/passwd",
        "s:../..:/data/up_link",
        "r:/data/up_link/secret.txt",
        "w:/data/up_link/escaped.txt",
    ]
    result = run(host, "escape", *ops)
    assert result.exit_code == 0, result
    lines = result.stdout.decode().splitlines()
    assert len(lines) == len(ops), lines
    for line in lines:
        op, _, outcome = line.partition(": ")
        if op.startswith("s "):
            continue  # creating a dangling link is allowed; following it out must fail
        assert not outcome.startswith("OK"), f"escape succeeded: {line}"
        assert outcome in REFUSED | {"ENOENT", "ENOTDIR"}, line
    assert (sandbox / "secret.txt").read_text() == SECRET
    assert sorted(p.name for p in sandbox.iterdir()) == ["data", "ro", "secret.txt"]
    assert not Path("/escaped.txt").exists()


def test_spawn_files_are_private_and_read_only(host: Any) -> None:
    content = bytes(range(256)) + "✓ text".encode()
    files = {"/in/a.txt": content, "/in/b.txt": b"second"}
    assert run(host, "readfile", "/in/a.txt", files=files).stdout == content
    assert run(host, "readfile", "/in/b.txt", files=files).stdout == b"second"
    without = run(host, "readfile", "/in/a.txt")
    assert without.exit_code == 1 and without.stdout == b""
    assert b"/in/a.txt" in without.stderr
    refused = run(host, "write_ro", "/in/a.txt", files=files).stdout.decode().strip()
    assert refused.partition(": ")[2] in REFUSED, refused


@pytest.mark.parametrize("guest", ["/data/x.txt", "/data/sub/x.txt"])
def test_spawn_files_cannot_shadow_a_preopen(host: Any, guest: str) -> None:
    with pytest.raises(PermissionError, match="would shadow the preopen /data"):
        run(host, "write_rw", "/data/x.txt", "hi", files={guest: b"fake"})


def test_scratch_only_when_the_manifest_allows(host: Any) -> None:
    result = run(host, "scratchy", "/scratch/tmp.txt", "scratch data", scratch=True)
    assert (result.exit_code, result.stdout) == (0, b"scratch data"), result
    again = run(host, "scratchy", "/scratch/tmp.txt", "fresh", scratch=True)
    assert again.stdout == b"fresh"
    no_scratch = run(host, "scratchy", "/scratch/tmp.txt", "x")
    assert no_scratch.exit_code == 1
    with pytest.raises(PermissionError, match=r"services\.write_rw\.scratch"):
        run(host, "write_rw", "/scratch/tmp.txt", "x", scratch=True)


def test_grants_only_when_the_manifest_allows(host: Any, tmp_path: Path) -> None:
    picked = tmp_path / "picked"
    picked.mkdir()
    (picked / "hello.txt").write_text("picked by the user")
    grant = Preopen(guest="/picked", host=str(picked), mode="ro")
    assert run(host, "picker", "/picked/hello.txt", grants=(grant,)).stdout == (
        b"picked by the user"
    )
    with pytest.raises(PermissionError, match=r"services\.readfile\.user_grants"):
        run(host, "readfile", "/picked/hello.txt", grants=(grant,))


def test_args_and_env_are_appended_and_nothing_else_leaks(host: Any) -> None:
    result = run(host, "env_args", "x y", "", env=(("EXTRA", "2 = two"),))
    assert result.exit_code == 0, result
    assert result.stdout.decode().splitlines() == [
        "arg[0]=env_args",
        "arg[1]=--base",
        "arg[2]=x y",
        "arg[3]=",
        "env:BASE=1",
        "env:EXTRA=2 = two",
    ]


def test_spawn_env_cannot_override_the_manifest(host: Any) -> None:
    with pytest.raises(PermissionError, match=r"env BASE is set by services\.env_args\.env"):
        run(host, "env_args", "x", "", env=(("BASE", "evil"),))


def test_unknown_service_lists_the_known_ones(host: Any) -> None:
    with pytest.raises(LookupError, match="write_rw"):
        host.run_task("nope")

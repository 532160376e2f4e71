"""Per-spawn outputs: files a service writes, handed back at exit (runtime/host/outputs.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from wvwasi.runtime.host.events import Exited
from wvwasi.runtime.host.service_host import SpawnOptions
from wvwasi.runtime.manifest import load_manifest


@pytest.fixture
def host(make_project: Callable[..., Any], make_host: Callable[..., Any]) -> Any:
    project = make_project({
        "copy": {"source": "copyfile"},
        "write": {"source": "write_rw", "limits": {"files": 4, "files_size": 100}},
        "plant": {"source": "plant", "limits": {"files": 4}},
        "loop": {"source": "loop"},
        "ro": {"source": "write_rw", "preopens": [{"guest": "/data", "host": "$TEMP",
                                                    "mode": "ro"}]},
    })
    return make_host(load_manifest(project)).start()


def run(host: Any, name: str, *args: str, **options: Any) -> Any:
    return host.run_task(name, options=SpawnOptions(args=args, **options))


def test_written_outputs_come_back_in_order(host: Any) -> None:
    data = bytes(range(256)) * 1000
    result = run(host, "copy", "/in/a.bin", "/out/b.bin", files={"/in/a.bin": data},
                 outputs=("/out/b.bin", "/out/never.bin"))
    assert (result.exit_code, result.error, result.stderr) == (0, None, b"")
    assert result.outputs == (("/out/b.bin", data),)  # never written: not handed back


def test_outputs_in_nested_folders_share_one_preopen(host: Any) -> None:
    result = run(host, "plant", "w:/out/sub/a=one", "w:/out/b=two",
                 outputs=("/out/sub/a", "/out/b"))
    assert result.exit_code == 0, result
    assert dict(result.outputs) == {"/out/sub/a": b"one", "/out/b": b"two"}


def test_an_output_over_files_size_ends_the_task(host: Any) -> None:
    result = run(host, "write", "/out/r", "x" * 101, outputs=("/out/r",))
    assert result.error is not None and result.error.kind == "output", result
    assert "services.write.limits.files_size" in result.error.message
    assert result.outputs == ()
    assert run(host, "write", "/out/r", "x" * 100, outputs=("/out/r",)).outputs == (
        ("/out/r", b"x" * 100),)


def test_too_many_entries_in_output_folders_end_the_task(host: Any) -> None:
    ops = [f"w:/out/f{i}=x" for i in range(6)]
    result = run(host, "plant", *ops, outputs=("/out/f0",))
    assert result.error is not None and result.error.kind == "output", result
    assert "services.plant.limits.files" in result.error.message


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../../../etc/passwd", "b"])
def test_a_planted_link_is_not_followed(host: Any, target: str) -> None:
    result = run(host, "plant", "w:/out/b=mine", f"s:{target}:/out/a", outputs=("/out/a",))
    assert result.exit_code == 0, result
    assert result.outputs == ()


def test_a_folder_at_an_output_path_is_not_read(host: Any) -> None:
    result = run(host, "plant", "m:/out/a", outputs=("/out/a",))
    assert result.exit_code == 0 and result.outputs == (), result


def test_terminated_instance_hands_nothing_back(host: Any) -> None:
    inst = host.spawn("loop", SpawnOptions(outputs=("/out/a",)))
    inst.terminate()
    exited = inst.wait(10)
    assert isinstance(exited, Exited) and exited.outputs == ()
    assert exited.error is not None and exited.error.kind == "terminated"


@pytest.mark.parametrize(("outputs", "error", "match"), [
    (("/result",), ValueError, "inside a folder"),
    (("relative/x",), ValueError, "outputs path refused"),
    (("/out/a", "/out/a/b"), ValueError, "overlaps another output"),
    (("/data/x",), PermissionError, "shadow the preopen /data"),
    (tuple(f"/o/{i}" for i in range(5)), PermissionError, r"services\.write\.limits\.files = 4"),
])
def test_bad_outputs_are_refused(host: Any, outputs: tuple[str, ...], error: type,
                                 match: str) -> None:
    name = "ro" if outputs == ("/data/x",) else "write"
    with pytest.raises(error, match=match):
        run(host, name, "/x", "y", outputs=outputs)


def test_an_output_folder_may_not_shadow_a_file(host: Any) -> None:
    with pytest.raises(PermissionError, match="would shadow the file /out/in"):
        run(host, "copy", "/out/in", "/out/res", files={"/out/in": b"x"}, outputs=("/out/res",))


def test_outputs_spread_over_more_than_16_folders_are_refused(host: Any) -> None:
    """Each output folder is a folder handle of the instance: at most MAX_FOLDERS of them."""
    nested = ("/o/x", *(f"/o/{i}/x" for i in range(40)))  # all inside /o: one preopen
    assert run(host, "copy", outputs=nested).exit_code == 2  # usage: nothing to copy
    with pytest.raises(PermissionError, match="more than 16 separate folders"):
        run(host, "copy", outputs=tuple(f"/o{i}/x" for i in range(17)))

"""packager/services.py and tools.run_shell: a service's build.command runs one way for `build`
(quiet) and `run`/`dev`/`new` (shown as it comes); failures name the step and the last lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from wvwasi.packager.services import build_service
from wvwasi.packager.tools import BuildError, run_shell
from wvwasi.runtime.manifest import BuildStep, Service

NOISY_FAIL = "for i in $(seq 1 5000); do echo out $i; echo err $i >&2; done; exit 3"


def test_every_byte_is_shown_and_the_error_keeps_the_last_lines(tmp_path: Path) -> None:
    shown = bytearray()
    with pytest.raises(BuildError) as e:
        run_shell(NOISY_FAIL, step="build services.x", cwd=tmp_path, echo=shown.extend)
    lines = shown.decode().splitlines()
    assert len(lines) == 10_000 and lines[-2:] == ["out 5000", "err 5000"]  # stderr merged
    assert str(e.value) == (f"build services.x: `{NOISY_FAIL}` exited with status 3: "
                            "err 4999 | out 5000 | err 5000")


def test_a_build_that_does_not_create_its_source_fails(tmp_path: Path) -> None:
    service = Service(name="x", source=tmp_path / "x.wasm",
                      build=BuildStep(command="echo built", workdir=tmp_path))
    with pytest.raises(BuildError, match=r"build services\.x: build\.command did not create"):
        build_service(service)
    done = Service(name="x", source=tmp_path / "x.wasm",
                   build=BuildStep(command="touch x.wasm", workdir=tmp_path))
    build_service(done)
    assert done.source.is_file()

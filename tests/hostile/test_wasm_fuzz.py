"""Property-based fuzzing of wasminfo.inspect()/check_command_module() and modules.validate()
with mutated real modules: truncations, bit flips, spliced bytes, over-long LEB128 sizes.

Whatever the bytes: wasminfo returns a ModuleInfo or raises WasmModuleError naming the file and
why; validation raises WasmLoadError naming the file — never IndexError, ValueError,
OverflowError or MemoryError. Long run: see hypothesis_profiles.py.
"""

from __future__ import annotations

from pathlib import Path

import hypothesis_profiles  # noqa: F401  (loads the ci/long profile)
import pytest
import wasmtime
from hostile_project import COMMAND_WAT, LEGACY_EH_WAT, wat
from hypothesis import given
from hypothesis import strategies as st

from wvwasi.runtime.host.modules import WasmLoadError, make_engine, validate
from wvwasi.runtime.wasminfo import (
    ModuleInfo,
    WasmModuleError,
    check_command_module,
    inspect,
)

#: LEB128 encodings no u32 field may hold: too many bytes, or a value of 2**32 or more.
BAD_LEBS = [
    b"\xff\xff\xff\xff\x0f",  # 2**32 - 1: valid, but larger than any file here
    b"\x80\x80\x80\x80\x10",  # 2**32
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",  # 10 bytes
    b"\x80" * 64 + b"\x00",  # 65 bytes
    b"\xff" * 16,  # never ends
]


@pytest.fixture(scope="module")
def originals(wasm_fixtures: dict[str, Path]) -> list[bytes]:
    """Real modules: a C fixture built by clang (wasi-libc) and two WAT ones."""
    c_fixture = wasm_fixtures["echo_lines"].read_bytes()
    return [c_fixture, wat(COMMAND_WAT), wat(LEGACY_EH_WAT)]


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    return make_engine()


@st.composite
def mutations(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["truncate", "flip", "splice", "leb", "delete"]))
        if how == "truncate":
            del data[at:]
        elif how == "flip" and data:
            i = min(at, len(data) - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif how == "leb":  # an over-long or oversized LEB128 where a size or count may be
            data[at:at + draw(st.integers(0, 5))] = draw(st.sampled_from(BAD_LEBS))
        else:
            del data[at:at + draw(st.integers(1, 32))]
    return bytes(data)


def _check(path: Path, engine: wasmtime.Engine) -> None:
    for read in (inspect, check_command_module):
        try:
            assert isinstance(read(path), ModuleInfo)
        except WasmModuleError as e:
            assert str(e) == f"{path}: {e.reason}" and e.reason and "\n" not in e.reason
    try:
        validate(engine, path.read_bytes(), path)
    except WasmLoadError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e), str(e)


@pytest.mark.timeout(900)
@given(data=st.data(), which=st.integers(0, 2))
def test_mutated_modules_give_wasm_errors_only(
    tmp_path: Path, originals: list[bytes], engine: wasmtime.Engine, data: st.DataObject,
    which: int,
) -> None:
    path = tmp_path / "fuzzed.wasm"
    path.write_bytes(data.draw(mutations(originals[which])))
    _check(path, engine)


@pytest.mark.timeout(900)
@given(body=st.binary(max_size=256))
def test_random_bytes_after_the_header(tmp_path: Path, engine: wasmtime.Engine, body: bytes):
    path = tmp_path / "random.wasm"
    path.write_bytes(b"\0asm\x01\0\0\0" + body)
    _check(path, engine)


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (b"\x02" + BAD_LEBS[2], "LEB128 integer longer than 5 bytes"),
        (b"\x02" + BAD_LEBS[1], "LEB128 integer larger than 32 bits"),
        (b"\x00" + BAD_LEBS[0], "section 0 of 4294967295 bytes runs past the end of the file "
         "(0 bytes left)"),
        (b"\x02\x05\x01\x02ab", "section 2 of 5 bytes runs past the end of the file "
         "(4 bytes left)"),
        (b"\x02\x02\x01\x00", "unexpected end of data"),
        (b"\x02\x03\x01\x7fa", "name runs past the end of its section"),
    ],
)
def test_malformed_sizes_are_named(tmp_path: Path, tail: bytes, reason: str) -> None:
    path = tmp_path / "bad.wasm"
    path.write_bytes(b"\0asm\x01\0\0\0" + tail)
    with pytest.raises(WasmModuleError) as info:
        inspect(path)
    assert str(info.value) == f"{path}: malformed WebAssembly module ({reason})"

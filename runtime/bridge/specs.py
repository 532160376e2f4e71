"""What a page may ask for: SPAWN/RUN/PICK specs parsed into typed requests, and refusals.

`ProtocolError` (from protocol.py) is a malformed record: it closes the connection. `Refused` is a
well-formed request the app says no to (an unknown service, something the manifest does not
allow): it goes back to the page as an ERROR record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..host.events import ServiceLimitError
from ..host.service_host import SpawnOptions
from ..manifest import Manifest, Preopen, Service
from .protocol import ProtocolError


class Refused(Exception):
    """A request the page may make but that fails; reported to the page as an ERROR record."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def refusal(e: Exception) -> Refused:
    """The page-facing form of an error raised by the host for a spawn or run."""
    if isinstance(e, Refused):
        return e
    if isinstance(e, PermissionError):
        return Refused("permission", str(e))
    if isinstance(e, LookupError):
        return Refused("lookup", str(e))
    if isinstance(e, ServiceLimitError):
        return Refused("limit", str(e))
    if isinstance(e, ValueError):  # the host's checks of page-supplied args, env and paths
        return Refused("invalid", str(e))
    return Refused("start", str(e))


def service_of(manifest: Manifest, spec: dict[str, Any]) -> Service:
    """The service a spec names (Refused "lookup" if the app has none of that name)."""
    name = spec.get("service")
    if not isinstance(name, str):
        raise ProtocolError("spec.service must be a string")
    try:
        return manifest.service(name)
    except LookupError as e:
        raise Refused("lookup", str(e)) from None


def check_background(service: Service, options: SpawnOptions, *, run: bool) -> None:
    """A background service is shared: it cannot be run as a task or given options."""
    if service.kind != "background":
        return
    if run:
        raise Refused("permission", (
            f"service '{service.name}' is kind = \"background\": connect to it with "
            "new WasiWorker(), WasiWorker.run() is for tasks"
        ))
    if options != SpawnOptions():
        raise Refused("permission", (
            f"service '{service.name}' is kind = \"background\": its one instance is "
            "shared by the whole app, so a page cannot give it args, env, files, scratch, "
            "grants or outputs"
        ))


def split_stdin(spec: dict[str, Any], blob: memoryview) -> tuple[bytes, memoryview]:
    """A RUN record's (stdin, rest): stdin is the last `spec.stdin` bytes."""
    size = spec.get("stdin", 0)
    if not _is_int(size) or not 0 <= size <= len(blob):
        raise ProtocolError("spec.stdin must be the byte length of the stdin at the end")
    return bytes(blob[len(blob) - size :]), blob[: len(blob) - size]


def spawn_options(
    spec: dict[str, Any], blob: memoryview, grant: Callable[[Any], Preopen]
) -> SpawnOptions:
    """SpawnOptions from a spawn spec; `grant(item) -> Preopen` resolves `grants` items. Any
    value of the wrong type is a ProtocolError; the host checks the options against the
    manifest."""
    args = spec.get("args", [])
    if not isinstance(args, list) or not all(is_text(x) for x in args):
        raise ProtocolError("spec.args must be a list of strings")
    env = spec.get("env", [])
    if not isinstance(env, list) or not all(
        isinstance(kv, list) and len(kv) == 2 and all(is_text(x) for x in kv) for kv in env
    ):
        raise ProtocolError("spec.env must be a list of [name, value] strings")
    items = spec.get("files", [])
    if not isinstance(items, list):
        raise ProtocolError("spec.files must be a list of [guest path, size] pairs")
    files: dict[str, bytes] = {}
    pos = 0
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and is_text(item[0])
                and _is_int(item[1]) and 0 <= item[1] <= len(blob) - pos):
            raise ProtocolError("spec.files must be [guest path, size] pairs within the record")
        files[item[0]] = bytes(blob[pos : pos + item[1]])
        pos += item[1]
    scratch = spec.get("scratch", False)
    if not isinstance(scratch, bool):
        raise ProtocolError("spec.scratch must be a boolean")
    grants = spec.get("grants", [])
    if not isinstance(grants, list):
        raise ProtocolError("spec.grants must be a list")
    preopens: tuple[Preopen, ...] = tuple(grant(g) for g in grants)
    outputs = spec.get("outputs", [])
    if not isinstance(outputs, list) or not all(is_text(x) for x in outputs):
        raise ProtocolError("spec.outputs must be a list of guest paths")
    return SpawnOptions(args=tuple(args), env=tuple((k, v) for k, v in env), files=files,
                        scratch=scratch, grants=preopens, outputs=tuple(outputs))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_text(value: Any) -> bool:
    """A string that UTF-8 can carry (JSON may hold lone surrogates such as "\\ud800")."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True

"""What one spawn may add to a service (`SpawnOptions`), and `check_spawn()`, which refuses
whatever would widen the manifest: per-spawn files, grants, scratch, outputs, args and env can
only narrow what `[services.NAME]` grants (docs/architecture.md, "Service host")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import guestpath
from ..manifest import Preopen, Service
from .outputs import MAX_FOLDERS as MAX_OUTPUT_FOLDERS
from .outputs import folders as output_folders

#: Grants one spawn may carry (each holds one open folder while the instance runs).
MAX_GRANTS = 16


@dataclass(frozen=True)
class SpawnOptions:
    """Per-spawn additions. They can only narrow what the manifest grants."""

    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)
    scratch: bool = False
    grants: tuple[Preopen, ...] = ()  # user-picked folders; host paths absolute
    outputs: tuple[str, ...] = ()  # guest files handed back at exit (Exited.outputs)


def check_spawn(
    service: Service, options: SpawnOptions
) -> tuple[dict[str, bytes], list[str], tuple[str, ...]]:
    """The spawn's normalized files, grant guest paths and outputs; PermissionError/ValueError
    naming the service and the manifest key for anything the manifest does not allow."""
    name = service.name
    if options.scratch and not service.scratch:
        raise PermissionError(
            f"service '{name}' has no scratch folder: set services.{name}.scratch = true"
        )
    if options.grants and not service.user_grants:
        raise PermissionError(
            f"service '{name}' does not accept user-picked folders: "
            f"set services.{name}.user_grants = true"
        )
    checked = _check_paths(service, options)
    _check_argv_env(service, options)
    return checked


def _check_paths(
    service: Service, options: SpawnOptions
) -> tuple[dict[str, bytes], list[str], tuple[str, ...]]:
    """Normalized per-spawn files, grant guest paths and outputs; refused when malformed, over
    the service's `limits.files`/`files_size`, or overlapping a preopen or each other (an
    output's folder counts: it becomes a read-write folder of the instance)."""
    name = service.name
    limits = service.limits

    def guest(path: object, what: str) -> str:
        try:
            normal = guestpath.normalize(path)  # type: ignore[arg-type]
        except guestpath.GuestPathError as e:
            raise ValueError(f"service '{name}': {what} path refused: {e}") from None
        if normal == "/":
            raise ValueError(f"service '{name}': {what} path {path!r} must not be /")
        return normal

    if len(options.files) > limits.files:
        raise PermissionError(
            f"service '{name}': {len(options.files)} files given, more than "
            f"services.{name}.limits.files = {limits.files}"
        )
    size = sum(len(content) for content in options.files.values())
    if size > limits.files_size:
        raise PermissionError(
            f"service '{name}': files of {size} bytes together, more than "
            f"services.{name}.limits.files_size = {limits.files_size}"
        )
    if len(options.outputs) > limits.files:
        raise PermissionError(
            f"service '{name}': {len(options.outputs)} outputs given, more than "
            f"services.{name}.limits.files = {limits.files}"
        )
    if len(options.grants) > MAX_GRANTS:
        raise PermissionError(
            f"service '{name}': {len(options.grants)} grants given, at most {MAX_GRANTS}"
        )
    taken = {p.guest: f"the preopen {p.guest} from services.{name}.preopens"
             for p in service.preopens}
    if options.scratch:
        taken["/scratch"] = "the scratch folder /scratch"
    grants = []
    for grant in options.grants:
        if not Path(grant.host).is_absolute():
            raise PermissionError(f"service '{name}': granted folder {grant.host} is not absolute")
        path = guest(grant.guest, "grant")
        _check_free(name, path, f"grant {grant.guest}", taken)
        taken[path] = f"the grant {grant.guest}"
        grants.append(path)
    files: dict[str, bytes] = {}
    for raw, content in options.files.items():
        path = guest(raw, "files")
        _check_free(name, path, f"file {raw}", taken)
        taken[path] = f"the file {raw}"
        files[path] = content if isinstance(content, bytes) else bytes(content)
    outputs: dict[str, None] = {}
    for raw in options.outputs:
        path = guest(raw, "outputs")
        folder = path.rsplit("/", 1)[0]
        if not folder:
            raise ValueError(f"service '{name}': output {raw} must be inside a folder "
                             "(/out/result, not /result)")
        _check_free(name, folder, f"output {raw}", taken)
        if any(guestpath.overlap(path, o) and path != o for o in outputs):
            raise ValueError(f"service '{name}': output {raw} overlaps another output")
        outputs[path] = None
    if len(output_folders(outputs)[1]) > MAX_OUTPUT_FOLDERS:
        raise PermissionError(f"service '{name}': outputs in more than {MAX_OUTPUT_FOLDERS} "
                              "separate folders")
    return files, grants, tuple(outputs)


def _check_free(service: str, path: str, what: str, taken: Mapping[str, str]) -> None:
    """A per-spawn path may not be, contain or lie inside any other preopen, grant or file."""
    for other, which in taken.items():
        if guestpath.overlap(path, other):
            raise PermissionError(f"service '{service}': {what} would shadow {which}")


def _check_argv_env(service: Service, options: SpawnOptions) -> None:
    """Per-spawn args and env: strings without NUL (wasmtime would cut them there), env names
    without `=`, and no name the manifest sets."""
    name = service.name
    for i, arg in enumerate(options.args):
        if not isinstance(arg, str) or "\0" in arg:
            raise ValueError(f"service '{name}': args[{i}] must be a string without NUL")
    fixed = {k for k, _ in service.env}
    for key, value in options.env:
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(
                f"service '{name}': env name {key!r} is invalid (empty, or has '=' or NUL)"
            )
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"service '{name}': env {key} must be a string without NUL")
        if key in fixed:
            raise PermissionError(
                f"service '{name}': env {key} is set by services.{name}.env and cannot be "
                "overridden"
            )

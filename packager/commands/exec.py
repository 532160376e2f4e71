"""`wvwasi exec`: run one service headless, with the terminal as its stdin and stdout.

Like `wasmtime run`, but with the manifest's preopens and limits. The exit status is the
service's exit code; 134 when it trapped, 124 when it hit its timeout, 2 when the manifest or
the module is invalid (the module gets `check`'s import check, then wasmtime's validation before
compiling), 1 for other failures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from wvwasi.runtime.host.events import Event, Exited, Message, Stderr
from wvwasi.runtime.manifest import (
    Manifest,
    ManifestError,
    Preopen,
    load_manifest,
    manifest_for_wasm,
)
from wvwasi.runtime.wasminfo import WasmModuleError, check_command_module

if TYPE_CHECKING:
    from wvwasi.runtime.host.instance import Instance

_ERROR_STATUS = {"trap": 134, "memory": 134, "timeout": 124}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `exec` subcommand."""
    p = sub.add_parser("exec", help="run one service (or a bare .wasm) in the terminal")
    p.add_argument("target", metavar="SERVICE_OR_WASM", help="a service name or a .wasm path")
    p.add_argument("--project", type=Path, default=Path("."), help="project folder (default: .)")
    p.add_argument(
        "--dir", action="append", default=[], metavar="HOST::GUEST[:ro]",
        help="also preopen a host folder at a guest path (repeatable)",
    )
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="set a variable")
    p.add_argument("args", nargs="*", help="arguments for the service (put them after --)")
    p.set_defaults(run=run)


def parse_dir(spec: str) -> Preopen:
    """`HOST::GUEST[:ro]` as a Preopen (rw unless `:ro`)."""
    host, sep, guest = spec.partition("::")
    if not sep or not host or not guest:
        raise ValueError(f"--dir {spec!r}: expected HOST::GUEST or HOST::GUEST:ro")
    mode = "rw"
    if guest.endswith(":ro"):
        guest, mode = guest[:-3], "ro"
    if not Path(host).is_dir():
        raise ValueError(f"--dir {spec!r}: {host} is not a folder")
    return Preopen(guest=guest, host=str(Path(host).resolve()), mode=mode)


def parse_env(spec: str) -> tuple[str, str]:
    """`K=V` as a pair."""
    key, sep, value = spec.partition("=")
    if not sep or not key:
        raise ValueError(f"--env {spec!r}: expected K=V")
    return key, value


def _manifest(args: argparse.Namespace) -> tuple[Manifest, str]:
    extra_dirs = tuple(parse_dir(d) for d in args.dir)
    extra_env = tuple(parse_env(e) for e in args.env)
    argv = (*args.args, *args.passthrough)
    if args.target.endswith(".wasm"):
        m = manifest_for_wasm(Path(args.target), args=argv, env=extra_env, preopens=extra_dirs)
        return m, next(iter(m.services))
    m = load_manifest(args.project)
    s = m.service(args.target)
    s = dataclasses.replace(
        s,
        # The terminal carries raw bytes both ways, whatever the service's ipc mode.
        ipc="stream",
        args=s.args + argv,
        env=tuple({**dict(s.env), **dict(extra_env)}.items()),
        preopens=s.preopens + extra_dirs,
    )
    return dataclasses.replace(m, services=MappingProxyType({**m.services, s.name: s})), s.name


def run(args: argparse.Namespace) -> int:
    """Run the service until it exits; returns its exit status."""
    try:
        manifest, name = _manifest(args)
    except (ManifestError, LookupError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        check_command_module(manifest.services[name].source)  # the structural part of `check`
    except WasmModuleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import logging

    from wvwasi.packager.caches import compiled_dir
    from wvwasi.runtime.host.modules import WasmLoadError
    from wvwasi.runtime.host.service_host import ServiceHost

    out = sys.stdout.buffer
    logging.getLogger("wvwasi.service").setLevel(logging.ERROR)  # errors are printed below

    def on_event(event: Event) -> None:
        if isinstance(event, Message):
            out.write(event.data if isinstance(event.data, bytes) else event.data.encode())
            out.flush()
        elif isinstance(event, Stderr):
            print(event.text, file=sys.stderr, flush=True)

    with ServiceHost(manifest, compile_cache=compiled_dir()) as host:
        try:
            inst = host.spawn(name, on_event=on_event)
        except (OSError, WasmLoadError, PermissionError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        threading.Thread(target=_pump_stdin, args=(inst,), daemon=True).start()
        exited = inst.wait()
    assert isinstance(exited, Exited)
    if exited.error is not None:
        print(f"error: {exited.error.message}", file=sys.stderr)
        return _ERROR_STATUS.get(exited.error.kind, 1)
    return exited.code or 0


def _pump_stdin(inst: Instance) -> None:
    """Copy the terminal's stdin to the service until EOF.

    Reads the raw fd: a daemon thread blocked inside `sys.stdin.buffer` would hold its lock
    while the interpreter exits, which aborts Python.
    """
    fd = sys.stdin.fileno()
    try:
        while chunk := os.read(fd, 1 << 16):
            inst.write_stdin(chunk)
    except (OSError, ValueError):
        pass
    finally:
        inst.close_stdin()

"""The service host: runs a manifest's services under one wasmtime Engine.

`spawn` starts an instance of any service; `run_task` runs one to completion; `subscribe`
connects to the shared instance of a `background` service, which the host starts with the app
and restarts with back-off when it fails. Per-spawn options can only narrow the manifest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import wasmtime

from . import framing
from .events import Event, Exited, ServiceError
from .instance import Instance, Launch, resolve_preopens
from .manifest import Manifest, Preopen, Service
from .modules import ModuleLoader, WasmLoadError, make_engine
from .paths import PathContext

log = logging.getLogger("wvwasi.host")

TICK_SECONDS = 0.005
_RESTART_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
_HEALTHY_SECONDS = 10.0
_MAX_PENDING = 10_000


class ServiceLimitError(RuntimeError):
    """A spawn over the service's `limits.instances`."""


@dataclass(frozen=True)
class SpawnOptions:
    """Per-spawn additions. They can only narrow what the manifest grants."""

    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)
    scratch: bool = False
    grants: tuple[Preopen, ...] = ()  # user-picked folders; host paths absolute


@dataclass(frozen=True)
class TaskResult:
    """The outcome of `run_task`."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    error: ServiceError | None


class ServiceHost:
    """Owns the Engine, the compiled modules, the epoch ticker and every live instance."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        paths: PathContext | None = None,
        precompiled_dir: Path | None = None,
        compile_cache: Path | None = None,
    ) -> None:
        self.manifest = manifest
        self._own_paths = paths is None
        self.paths = paths or PathContext.for_app(manifest)
        self.engine = make_engine()
        self.loader = ModuleLoader(self.engine, compile_cache or self.paths.cache_dir,
                                   precompiled_dir)
        self._linker = wasmtime.Linker(self.engine)
        self._linker.define_wasi()
        self._pres: dict[Path, tuple[wasmtime.Module, wasmtime.InstancePre]] = {}
        self._lock = threading.RLock()
        self._live: dict[int, Instance] = {}
        self._background: dict[str, _Background] = {}
        self._closed = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ServiceHost:
        """Start the epoch ticker and every `background` service."""
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="wvwasi:epoch", daemon=True)
            self._ticker.start()
        for name, service in self.manifest.services.items():
            if service.kind == "background" and name not in self._background:
                self._background[name] = _Background(self, service)
        return self

    def close(self) -> None:
        """Terminate every instance, wait for them, remove temporary folders."""
        for bg in list(self._background.values()):
            bg.stop()
        with self._lock:
            live = list(self._live.values())
        for inst in live:
            inst.terminate("stopped because the app is closing")
        for inst in live:
            inst.wait(2.0)
        self._closed.set()  # the ticker runs until here: it is what stops spinning instances
        if self._ticker is not None:
            self._ticker.join(1.0)
        if self._own_paths:
            self.paths.close()

    def __enter__(self) -> ServiceHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tick(self) -> None:
        while not self._closed.wait(TICK_SECONDS):
            self.engine.increment_epoch()
            with self._lock:
                live = list(self._live.values())
            for inst in live:
                inst.check_deadline()

    # -- spawning --------------------------------------------------------------------------------

    def service(self, name: str) -> Service:
        """The manifest's service `name`, or LookupError listing the known ones."""
        return self.manifest.service(name)

    def spawn(
        self,
        name: str,
        options: SpawnOptions | None = None,
        *,
        on_event: Callable[[Event], None] | None = None,
        capture: bool = False,
    ) -> Instance:
        """Start a new instance of service `name`; its events go to `on_event` (or `recv()`)."""
        if self._ticker is None:
            self.start()
        service = self.service(name)
        launch = self._launch(service, options or SpawnOptions(), capture)
        with self._lock:
            live = sum(1 for i in self._live.values() if i.service.name == name)
            limit = service.limits.instances
            if limit is not None and live >= limit:
                raise ServiceLimitError(
                    f"service '{name}' already has {live} live instance(s): "
                    f"services.{name}.limits.instances = {limit}"
                )
            inst = Instance(launch, on_event, on_exit=self._forget)
            self._live[inst.id] = inst
        return inst.start()

    def _forget(self, inst: Instance) -> None:
        with self._lock:
            self._live.pop(inst.id, None)

    def run_task(
        self, name: str, *, stdin: bytes = b"", options: SpawnOptions | None = None
    ) -> TaskResult:
        """Run service `name` to completion with `stdin`; collects its raw stdout/stderr."""
        inst = self.spawn(name, options, capture=True, on_event=lambda _e: None)
        if stdin:
            inst.write_stdin(stdin)
        inst.close_stdin()
        exited = inst.wait()
        assert exited is not None
        return TaskResult(exited.code, bytes(inst.stdout), bytes(inst.stderr), exited.error)

    def subscribe(self, name: str, on_event: Callable[[Event], None]) -> Subscription:
        """Connect to the shared instance of background service `name`."""
        service = self.service(name)
        if service.kind != "background":
            raise ValueError(f"service '{name}' is kind = \"{service.kind}\", not \"background\"")
        self.start()
        return self._background[name].subscribe(on_event)

    def restart(self, name: str) -> None:
        """Reload service `name`'s module (dev mode) and restart its instances' service."""
        service = self.service(name)
        self.loader.forget(service.source)
        with self._lock:
            self._pres.pop(service.source, None)
            live = [i for i in self._live.values() if i.service.name == name]
        for inst in live:
            inst.terminate("restarted after its source changed")
        bg = self._background.get(name)
        if bg is not None:
            bg.restart_now()

    # -- checks: options may only narrow the manifest ---------------------------------------------

    def _launch(self, service: Service, options: SpawnOptions, capture: bool) -> Launch:
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
        taken = [PurePosixPath(p.guest) for p in service.preopens]
        if options.scratch:
            taken.append(PurePosixPath("/scratch"))
        for guest in options.files:
            _check_guest_path(name, guest, "files")
            _check_not_shadowing(name, PurePosixPath(guest).parent, taken, f"file {guest}")
        for grant in options.grants:
            _check_guest_path(name, grant.guest, "grants")
            _check_not_shadowing(name, PurePosixPath(grant.guest), taken, f"grant {grant.guest}")
            if not Path(grant.host).is_absolute() or not Path(grant.host).is_dir():
                raise PermissionError(f"service '{name}': granted folder {grant.host} is missing")
        fixed = {k for k, _ in service.env}
        for key, _ in options.env:
            if key in fixed:
                raise PermissionError(
                    f"service '{name}': env {key} is set by services.{name}.env and cannot be "
                    "overridden"
                )
        pre = self._instance_pre(service)
        preopens = resolve_preopens(service.preopens, self.paths.resolve) + tuple(
            (Path(g.host), g.guest, g.mode == "rw") for g in options.grants
        )
        return Launch(
            service=service,
            pre=pre,
            engine=self.engine,
            argv=(name, *service.args, *options.args),
            env=service.env + tuple(options.env),
            preopens=preopens,
            files=dict(options.files),
            scratch=options.scratch,
            memory=service.limits.memory,
            timeout=service.limits.timeout,
            capture=capture,
        )

    def _instance_pre(self, service: Service) -> wasmtime.InstancePre:
        """The linked module of `service`, relinked when the loader hands out a new module."""
        module = self.loader.load(
            service.source, check=lambda m: self._link(m, service.source))
        with self._lock:
            cached = self._pres.get(service.source)
            if cached is not None and cached[0] is module:
                return cached[1]
            pre = self._link(module, service.source)
            self._pres[service.source] = (module, pre)
            return pre

    def _link(self, module: wasmtime.Module, source: Path | None = None) -> wasmtime.InstancePre:
        try:
            return self._linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as e:
            where = f"{source}: " if source else ""
            raise WasmLoadError(f"{where}cannot link as a WASI preview1 command: "
                                f"{str(e).splitlines()[0]}") from None


def _check_guest_path(service: str, guest: str, what: str) -> None:
    p = PurePosixPath(guest)
    if not p.is_absolute() or ".." in p.parts or len(p.parts) < 2:
        raise PermissionError(f"service '{service}': {what} path {guest!r} must be absolute, not /")


def _check_not_shadowing(
    service: str, folder: PurePosixPath, taken: list[PurePosixPath], what: str
) -> None:
    """A per-spawn folder may not replace a manifest preopen or any part of it."""
    for preopen in taken:
        if folder == preopen or preopen in folder.parents:
            raise PermissionError(
                f"service '{service}': {what} would shadow the preopen {preopen} from "
                f"services.{service}.preopens"
            )


class Subscription:
    """One client of a background service: receives every message; `send` goes to its stdin."""

    def __init__(self, bg: _Background, on_event: Callable[[Event], None]) -> None:
        self._bg = bg
        self.on_event = on_event

    def send(self, message: bytes | str) -> None:
        """Deliver a message to the shared instance."""
        self._bg.send(message)

    def close(self) -> None:
        """Stop receiving; the background service keeps running."""
        self._bg.unsubscribe(self)


class _Background:
    """Supervises the one shared instance of a background service."""

    def __init__(self, host: ServiceHost, service: Service) -> None:
        self.host = host
        self.service = service
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._instance: Instance | None = None
        self._pending: list[bytes | str] = []  # sent while (re)starting; delivered on start
        self._failures = 0
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._supervise, name=f"wvwasi:{service.name}:supervisor", daemon=True
        )
        self._thread.start()

    def subscribe(self, on_event: Callable[[Event], None]) -> Subscription:
        sub = Subscription(self, on_event)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def send(self, message: bytes | str) -> None:
        framing.encode(self.service.ipc, message)  # a wrong type fails now, not at delivery
        with self._lock:
            inst = self._instance
            if inst is None or not inst.alive:
                if len(self._pending) >= _MAX_PENDING:
                    raise BrokenPipeError(
                        f"background service '{self.service.name}' is not running and "
                        f"{_MAX_PENDING} messages are already waiting for it"
                    )
                self._pending.append(message)
                return
        inst.send(message)

    def _started(self, inst: Instance) -> None:
        with self._lock:
            self._instance = inst
            pending, self._pending = self._pending, []
        for message in pending:
            inst.send(message)

    def _dispatch(self, event: Event) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.on_event(event)
            except Exception:
                log.exception("subscriber of '%s' failed", self.service.name)

    def restart_now(self) -> None:
        self._failures = 0
        inst = self._instance
        if inst is not None:
            inst.terminate("restarted after its source changed")
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        inst = self._instance
        if inst is not None:
            inst.terminate("stopped because the app is closing")
            inst.wait(2.0)

    def _supervise(self) -> None:
        name = self.service.name
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                inst = self.host.spawn(name, on_event=self._dispatch)
                self._started(inst)
                exited = inst.wait()
            except (OSError, WasmLoadError, ServiceLimitError) as e:
                exited = Exited(None, ServiceError("start", f"service '{name}': {e}"))
                self._dispatch(exited)
            if self._stopped.is_set():
                return
            if time.monotonic() - started > _HEALTHY_SECONDS:
                self._failures = 0
            delay = _RESTART_BACKOFF[min(self._failures, len(_RESTART_BACKOFF) - 1)]
            self._failures += 1
            why = exited.error.message if exited and exited.error else f"exit code {exited.code}"
            log.warning("background '%s' ended (%s); restarting in %.2g s", name, why, delay)
            self._wake.clear()
            self._wake.wait(delay)

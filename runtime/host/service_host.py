"""The service host: runs a manifest's services under one wasmtime Engine.

`spawn` starts an instance of any service; `run_task` runs one to completion; `subscribe`
connects to the shared instance of a `background` service, which the host starts with the app
and restarts with back-off when it fails. Per-spawn options can only narrow the manifest.
Every queue and thread here has a bound (docs/security.md, "Host resources").
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

from ..manifest import Manifest, Service
from ..paths import PathContext, app_code_dir
from .background import Background, Subscription
from .events import Event, ServiceError, ServiceLimitError
from .hostdirs import HostDirs
from .hostpath import EscapeError, Root
from .instance import Instance, Launch
from .modules import ModuleLoader, WasmLoadError, make_engine
from .net import AppSockets, define_net, open_session
from .poll import shadow_poll_oneoff
from .spawn_options import SpawnOptions, check_spawn
from .tempdirs import LockedTempDir, sweep

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("wvwasi.host")

TICK_SECONDS = 0.005
_CLOSE_WAIT = 5.0  # seconds close() waits for instances and threads in all
#: File descriptors to allow per live instance: 3 pipe ends of ours, 3 of wasmtime's, preopens.
FDS_PER_INSTANCE = 16


@dataclass(frozen=True)
class TaskResult:
    """The outcome of `run_task`."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    error: ServiceError | None
    outputs: tuple[tuple[str, bytes], ...] = ()


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
        self.loader = ModuleLoader(self.engine, compile_cache or self._app_cache(),
                                   precompiled_dir)
        self._protect_code(compile_cache, precompiled_dir)
        self._dirs = HostDirs(manifest, self.paths)
        self._linker = wasmtime.Linker(self.engine)
        self._linker.define_wasi()
        shadow_poll_oneoff(self._linker)
        define_net(self._linker)
        self.sockets = AppSockets(manifest.limits.sockets)
        self._pres: dict[Path, tuple[wasmtime.Module, wasmtime.InstancePre]] = {}
        self._lock = threading.RLock()
        self._live: dict[int, Instance] = {}
        self._background: dict[str, Background] = {}
        self._closed = threading.Event()
        self._ticker: threading.Thread | None = None
        self._temp: LockedTempDir | None = None  # instances' folders; created by start()
        self._closing = False

    # -- lifecycle -------------------------------------------------------------------------------


    def _app_cache(self) -> Path | None:
        """The app's code folder (not `$CACHE`: services may write that) as the compile cache;
        None (compile every start, with a warning) when it cannot be created: a read-only or
        full home, a file in the way."""
        folder = app_code_dir(self.manifest.app.identifier)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        except OSError as e:
            log.warning("compile cache off (services compile at every start): %s", e)
            return None

    def _protect_code(self, compile_cache: Path | None, precompiled_dir: Path | None) -> None:
        """Register what this host runs or loads as code with the path context: no writable
        preopen, grant or page mount may reach it (hostdirs.py)."""
        add = self.paths.add_code_folder
        if compile_cache is not None:
            add(compile_cache, "the compile cache")
        if precompiled_dir is not None:
            add(precompiled_dir, "the app's precompiled services")
        add(self.manifest.ui.dir, "the app's page (UI folder)")
        if getattr(sys, "frozen", False):
            add(Path(sys.executable).resolve().parent, "the app's own folder")

    def start(self) -> ServiceHost:
        """Start the epoch ticker and every `background` service; the first start also removes
        temp folders that killed runs left behind."""
        self._check_code_reach()
        with self._lock:
            if self._temp is None:
                sweep()
                self._temp = LockedTempDir("host")
                _raise_fd_limit(self.manifest.limits.instances * FDS_PER_INSTANCE + 1024)
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="wvwasi:epoch", daemon=True)
            self._ticker.start()
        for name, service in self.manifest.services.items():
            if service.kind == "background" and name not in self._background:
                self._background[name] = Background(self, service)
        return self

    def _check_code_reach(self) -> None:
        """PermissionError at start for a read-write manifest preopen that would reach code
        (spawns check again, on the folder actually opened)."""
        for name, service in self.manifest.services.items():
            for p in service.preopens:
                reason = self._dirs.code_reach(p.host) if p.mode == "rw" else None
                if reason is not None:
                    raise PermissionError(f"service '{name}': preopen {p.guest}: {reason}")

    def close(self) -> None:
        """Terminate every instance, wait for them and every host thread, remove temporary
        folders. Threads stuck in an app callback are waited for `_CLOSE_WAIT` s in all."""
        deadline = time.monotonic() + _CLOSE_WAIT
        with self._lock:
            self._closing = True
        for bg in list(self._background.values()):
            bg.stop()
        with self._lock:
            live = list(self._live.values())
        for inst in live:
            inst.terminate("stopped because the app is closing")
        for inst in live:
            inst.wait(max(0.0, deadline - time.monotonic()))
        for bg in list(self._background.values()):
            bg.join(max(0.0, deadline - time.monotonic()))
        self._closed.set()  # the ticker runs until here: it is what stops spinning instances
        if self._ticker is not None:
            self._ticker.join(1.0)
        self.sockets.close()
        if self._temp is not None:
            self._temp.close()
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
        on_event: Callable[[Event], bool | None] | None = None,
        capture: bool = False,
        output_loop: asyncio.AbstractEventLoop | None = None,
        on_messages: Callable[[list[bytes | str]], bool] | None = None,
    ) -> Instance:
        """Start a new instance of service `name`; its events go to `on_event` (or `recv()`).
        With `output_loop` its messages are read and delivered on that loop, where `on_event`
        (or `on_messages`, a read's messages at once) must not block (`Instance`)."""
        if self._ticker is None:
            self.start()
        service = self.service(name)
        launch = self._launch(service, options or SpawnOptions(), capture)
        with self._lock:
            if self._closing:
                raise ServiceLimitError(f"cannot start '{name}': the app is closing")
            live = sum(1 for i in self._live.values() if i.service.name == name)
            limit = service.limits.instances
            if limit is not None and live >= limit:
                launch.release()
                raise ServiceLimitError(
                    f"service '{name}' already has {live} live instance(s): "
                    f"services.{name}.limits.instances = {limit}"
                )
            total = self.manifest.limits.instances
            if len(self._live) >= total:
                launch.release()
                raise ServiceLimitError(
                    f"cannot start '{name}': the app already runs {len(self._live)} service "
                    f"instances, its [limits] instances limit"
                )
            assert self._temp is not None
            try:
                inst = Instance(launch, on_event, on_exit=self._forget, temp_root=self._temp.path,
                                output_loop=output_loop, on_messages=on_messages)
            except BaseException:
                launch.release()
                raise
            self._live[inst.id] = inst
        return inst.start()

    def _forget(self, inst: Instance) -> None:
        with self._lock:
            self._live.pop(inst.id, None)

    def run_task(
        self, name: str, *, stdin: bytes = b"", options: SpawnOptions | None = None
    ) -> TaskResult:
        """Run service `name` to completion with `stdin`; collects its raw stdout/stderr."""
        inst = self.spawn(name, options, capture=True, on_event=_ignore)
        if stdin:
            inst.write_stdin(stdin)
        inst.close_stdin()
        exited = inst.wait()
        assert exited is not None
        return TaskResult(exited.code, bytes(inst.stdout), bytes(inst.stderr), exited.error,
                          exited.outputs)

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
        files, grant_guests, outputs = check_spawn(service, options)
        pre = self._instance_pre(service)
        opened: list[Root] = []
        preopens: list[tuple[Path, str, bool]] = []
        try:
            for p in service.preopens:
                opened.append(_open_dir(name, p.guest, p.host, self._dirs.preopen, p.mode))
                preopens.append((Path(opened[-1].wasi_path()), p.guest, p.mode == "rw"))
            for grant, guest in zip(options.grants, grant_guests, strict=True):
                opened.append(_open_dir(name, guest, grant.host, self._dirs.grant, grant.mode))
                preopens.append((Path(opened[-1].wasi_path()), guest, grant.mode == "rw"))
        except BaseException:
            for root in opened:
                root.close()
            raise
        return Launch(
            service=service,
            pre=pre,
            engine=self.engine,
            argv=(name, *service.args, *options.args),
            env=service.env + tuple(options.env),
            preopens=tuple(preopens),
            files=files,
            scratch=options.scratch,
            outputs=outputs,
            memory=service.limits.memory,
            timeout=service.limits.timeout,
            capture=capture,
            opened=tuple(opened),
            net=open_session(name, service.net, self.sockets, self.paths.resolve_file),
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


def _open_dir(
    name: str, guest: str, host: str, opener: Callable[[str, str], Root], mode: str
) -> Root:
    """Open one host folder of a spawn; errors name the service and the guest path."""
    try:
        return opener(host, mode)
    except EscapeError as e:
        raise PermissionError(f"service '{name}': preopen {guest}: {e.strerror or e}") from None
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(
            f"service '{name}': preopen {guest}: host folder {host} does not exist"
        ) from None
    except OSError as e:
        raise OSError(
            f"service '{name}': preopen {guest}: cannot open host folder {host}: "
            f"{e.strerror or e}"
        ) from None


def _raise_fd_limit(wanted: int) -> None:
    """Raise this process's soft fd limit towards `wanted` (never past the hard limit), so
    that `[limits] instances` live instances fit under it (a desktop's soft limit is often 1024)."""
    if sys.platform == "win32":  # pragma: no cover - no such limit
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            log.warning("cannot raise the open-file limit from %d to %d", soft, target)


def _ignore(_event: Event) -> None:
    """run_task's events: it reads the captured stdout/stderr instead."""

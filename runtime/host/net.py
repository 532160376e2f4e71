"""`wvwasi_net`: allow-listed outbound TCP for services, with TLS done by the host.

wasmtime's preview1 has no socket creation and its C API no per-address check, so services reach
the network through this import module instead (declared in wvwasi/include/wvwasi/net.h):

    connect(host_ptr, host_len, port, tls) -> handle >= 0 | -errno
    send(handle, buf, len) -> bytes sent | -errno
    recv(handle, buf, len, timeout_ms) -> bytes read, 0 at EOF | -errno (-EAGAIN: timed out)
    close(handle) -> 0 | -errno
    error(buf, len) -> length of the last error's text, copied NUL-terminated into buf

Handles are this module's own, kept apart from WASI fds, per instance, and closed when it ends.
Whether `host:port` may be reached is decided from `services.X.net.connect` before any packet
leaves (-EACCES). A listed *name* is then resolved by the host, and every address it resolves to
is checked again: loopback, private, link-local and other special addresses are refused unless
that address is itself listed (DNS rebinding). TLS verifies the server's certificate against the
system's store plus the app's own `net.ca`, for the name the guest asked for.

Every wait (name lookup, connect, handshake, send, recv) is sliced so that `terminate()` ends it
within SLICE seconds (-EINTR; the instance then stops at its next epoch check). Host functions
never raise: wasmtime-py passes exceptions between threads through a global.
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import logging
import select
import socket
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from ..manifest import Endpoint, Net

log = logging.getLogger("wvwasi.net")

MODULE = "wvwasi_net"
#: Seconds between looks at the instance's stop event while a call waits.
SLICE = 0.05
#: Bytes one send or recv moves at most (the host keeps no socket buffer of its own).
MAX_IO = 1 << 20
#: Longest host name a guest may pass.
MAX_HOST = 253

# WASI errno values (preview1), returned negated.
EACCES, EAGAIN, EBADF, ECONNREFUSED, EFAULT, EINTR, EINVAL, EIO = 2, 6, 8, 14, 21, 27, 28, 29
EMFILE, ENOTCONN, EPROTO, ETIMEDOUT = 33, 53, 65, 73
_FROM_OS = {
    _errno.ECONNREFUSED: ECONNREFUSED, _errno.ECONNRESET: 15, _errno.ECONNABORTED: 13,
    _errno.EHOSTUNREACH: 23, _errno.ENETUNREACH: 40, _errno.EPIPE: 64, _errno.ETIMEDOUT: ETIMEDOUT,
    _errno.ENOTCONN: ENOTCONN, _errno.EADDRNOTAVAIL: 4,
}

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, by the system's resolver (TCP only)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class NetError(Exception):
    """A refused or failed network call: `code` is the WASI errno the guest gets."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class AppSockets:
    """The app-wide count of open sockets (`[limits] sockets`) and the shared name lookups."""

    def __init__(self, limit: int, resolver: Resolver = system_resolver) -> None:
        self.limit = limit
        self.resolver = resolver
        self._open = 0
        self._lock = threading.Lock()
        self._lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="wvwasi:dns")

    def take(self) -> None:
        with self._lock:
            if self._open >= self.limit:
                raise NetError(EMFILE, f"the app already has {self.limit} sockets open "
                               "([limits] sockets)")
            self._open += 1

    def give_back(self) -> None:
        with self._lock:
            self._open -= 1

    def lookup(self, host: str, port: int, stop: threading.Event, timeout: float) -> list[str]:
        """Resolve on a lookup thread; the caller waits in slices (stop, timeout)."""
        future = self._lookups.submit(self.resolver, host, port)
        waited = 0.0
        while True:
            try:
                return future.result(SLICE)
            except TimeoutError:
                waited += SLICE
                if stop.is_set():
                    raise NetError(EINTR, "stopped while looking up " + host) from None
                if waited >= timeout:
                    raise NetError(ETIMEDOUT, f"looking up {host} took over {timeout:g} s") \
                        from None
            except OSError as e:
                raise NetError(EIO, f"cannot resolve {host}: {e.strerror or e}") from None

    def close(self) -> None:
        self._lookups.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Allowed:
    """A permitted target: the addresses to try, in order, and the name TLS verifies."""

    addresses: tuple[str, ...]
    server_name: str


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def _special(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, private, link-local and every other address not on the public internet."""
    return not ip.is_global or ip.is_multicast


def _matches(rule: Endpoint, host: str, port: int) -> bool:
    if rule.port != port:
        return False
    if rule.host.startswith("*."):
        return host.endswith(rule.host[1:]) and len(host) > len(rule.host) - 1
    return rule.host == host


def check_target(net: Net, host: str, port: int) -> str:
    """The normalized host if `host:port` is listed in `net.connect`; NetError(EACCES) if not.
    Decided from the text alone: nothing has been sent anywhere yet."""
    ip = _ip(host.strip("[]"))
    name = str(ip) if ip is not None else host.lower().rstrip(".")
    if not 0 < port < 65536:
        raise NetError(EINVAL, f"port {port} is out of range")
    if not net.connect:
        raise NetError(EACCES, "this service has no network (its net.connect lists nothing)")
    if not any(_matches(rule, name, port) for rule in net.connect):
        listed = ", ".join(str(e) for e in net.connect)
        raise NetError(EACCES, f"{name}:{port} is not in net.connect (listed: {listed})")
    return name


def vet_addresses(net: Net, name: str, port: int, addresses: list[str]) -> tuple[str, ...]:
    """The resolved addresses of listed `name` that may be used (DNS rebinding check)."""
    usable, refused = [], []
    for text in addresses:
        ip = _ip(text)
        if ip is None:
            continue
        listed = any(rule.host == str(ip) and rule.port == port for rule in net.connect)
        if _special(ip) and not listed:
            refused.append(str(ip))
        else:
            usable.append(text)
    if not usable:
        why = (f"{name} resolved to {', '.join(refused)}: a loopback, private or link-local "
               "address that net.connect does not list" if refused
               else f"{name} resolved to no address")
        raise NetError(EACCES, why)
    return tuple(usable)


class NetSession:
    """One instance's sockets: the handles its guest holds, under `net` and the app's bounds."""

    def __init__(self, service: str, net: Net, app: AppSockets, ca: Path | None) -> None:
        self.service = service
        self.net = net
        self.app = app
        self.ca = ca
        self.last_error = ""
        self._stop = threading.Event()
        self._socks: dict[int, socket.socket] = {}
        self._next = 0
        self._tls: ssl.SSLContext | None = None

    def bind(self, stop: threading.Event) -> None:
        """Wait on the instance's stop event (set by terminate)."""
        self._stop = stop

    def close(self) -> None:
        """Close every socket the guest left open."""
        for handle in list(self._socks):
            self.close_handle(handle)

    # -- the calls (each raises NetError; the import wrappers turn it into -errno) --------------

    def connect(self, host: str, port: int, tls: bool) -> int:
        if len(self._socks) >= self.net.sockets:
            raise NetError(EMFILE, f"{self.net.sockets} sockets are open already "
                           f"(services.{self.service}.net.sockets)")
        name = check_target(self.net, host, port)
        timeout = self.net.connect_timeout
        if _ip(name) is not None:
            addresses: tuple[str, ...] = (name,)
        else:
            addresses = vet_addresses(
                self.net, name, port, self.app.lookup(name, port, self._stop, timeout))
        self.app.take()
        try:
            sock = self._open(addresses, port, timeout)
            if tls:
                sock = self._handshake(sock, name, timeout)
        except BaseException:
            self.app.give_back()
            raise
        handle = self._next
        self._next += 1
        self._socks[handle] = sock
        return handle

    def send(self, handle: int, data: bytes) -> int:
        sock = self._sock(handle)
        while True:
            try:
                return sock.send(data)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                self._wait(sock, write=True, timeout=self.net.read_timeout, what="send")
            except OSError as e:
                raise _os_error(e, "send") from None

    def recv(self, handle: int, size: int, timeout: float) -> bytes:
        sock = self._sock(handle)
        while True:
            try:
                return sock.recv(size)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                if timeout <= 0:
                    raise NetError(EAGAIN, "no data yet") from None
                self._wait(sock, write=False, timeout=timeout, what="recv", again=True)
            except OSError as e:
                raise _os_error(e, "recv") from None

    def close_handle(self, handle: int) -> None:
        sock = self._socks.pop(handle, None)
        if sock is None:
            raise NetError(EBADF, f"no open socket {handle}")
        try:
            sock.close()
        finally:
            self.app.give_back()

    # -- helpers -----------------------------------------------------------------------------------

    def _sock(self, handle: int) -> socket.socket:
        sock = self._socks.get(handle)
        if sock is None:
            raise NetError(EBADF, f"no open socket {handle}")
        return sock

    def _wait(self, sock: socket.socket, *, write: bool, timeout: float, what: str,
              again: bool = False) -> None:
        """Wait until `sock` is ready, in slices: -EINTR on stop, timeout -> EAGAIN/ETIMEDOUT."""
        waited = 0.0
        while True:
            if self._stop.is_set():
                raise NetError(EINTR, f"stopped during {what}")
            wait = min(SLICE, timeout - waited)
            ready = select.select([], [sock], [], wait) if write else \
                select.select([sock], [], [], wait)
            if ready[1 if write else 0]:
                return
            waited += wait
            if waited >= timeout:
                if again:
                    raise NetError(EAGAIN, f"{what} timed out")
                raise NetError(ETIMEDOUT, f"{what} waited over {timeout:g} s")

    def _open(self, addresses: tuple[str, ...], port: int, timeout: float) -> socket.socket:
        last: NetError | None = None
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                code = sock.connect_ex((address, port))
                if code not in (0, _errno.EINPROGRESS, _errno.EWOULDBLOCK):
                    raise _os_error(OSError(code, _errno.errorcode.get(code, "")), "connect")
                self._wait(sock, write=True, timeout=timeout, what=f"connect to {address}")
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise _os_error(OSError(code, _errno.errorcode.get(code, "")),
                                    f"connect to {address}:{port}")
                return sock
            except NetError as e:
                sock.close()
                if e.code == EINTR:
                    raise
                last = e
            except BaseException:
                sock.close()
                raise
        assert last is not None
        raise last

    def _handshake(self, sock: socket.socket, name: str, timeout: float) -> socket.socket:
        try:
            tls = self._context().wrap_socket(sock, server_hostname=name,
                                              do_handshake_on_connect=False)
        except BaseException:
            sock.close()
            raise
        try:
            while True:
                try:
                    tls.do_handshake()
                    return tls
                except ssl.SSLWantReadError:
                    self._wait(tls, write=False, timeout=timeout, what="TLS handshake")
                except ssl.SSLWantWriteError:
                    self._wait(tls, write=True, timeout=timeout, what="TLS handshake")
        except ssl.SSLCertVerificationError as e:
            tls.close()
            raise NetError(EPROTO, f"TLS to {name}: {e.verify_message or e.reason}") from None
        except ssl.SSLError as e:
            tls.close()
            raise NetError(EPROTO, f"TLS to {name}: {e.reason or e}") from None
        except BaseException:
            tls.close()
            raise

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            context = ssl.create_default_context()
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.ca is not None:
                try:
                    context.load_verify_locations(cafile=str(self.ca))
                except (OSError, ssl.SSLError) as e:
                    raise NetError(EIO, f"cannot read net.ca {self.ca}: {e}") from None
            self._tls = context
        return self._tls


def _os_error(e: OSError, what: str) -> NetError:
    code = _FROM_OS.get(e.errno or 0, EIO)
    return NetError(code, f"{what}: {e.strerror or e}")


_current = threading.local()


def set_current(session: NetSession | None) -> None:
    """Declare the instance running on this thread (host calls run on the caller's thread)."""
    _current.session = session


def define_net(linker: wasmtime.Linker) -> None:
    """Define the `wvwasi_net` imports on `linker` (every module may import them; a service
    whose `net.connect` lists nothing gets -EACCES for every connect)."""
    i32 = wasmtime.ValType.i32()

    def wrap(fn: Callable[..., int], name: str, arity: int) -> None:
        def call(caller: wasmtime.Caller, *args: int) -> int:
            session: NetSession | None = getattr(_current, "session", None)
            try:
                if session is None:
                    raise NetError(EACCES, "no network outside a service instance")
                memory = caller["memory"]
                if not isinstance(memory, wasmtime.Memory):
                    raise NetError(EFAULT, "the module exports no memory")
                return fn(session, _Guest(caller, memory), *(a & 0xFFFFFFFF for a in args))
            except NetError as e:
                if session is not None:
                    session.last_error = str(e)
                return -e.code
            except Exception as e:  # a bug in wvwasi: never raise into wasmtime
                log.exception("wvwasi_net.%s failed", name)
                if session is not None:
                    session.last_error = f"{name}: {e!r}"
                return -EIO

        ty = wasmtime.FuncType([i32] * arity, [i32])
        linker.define_func(MODULE, name, ty, call, access_caller=True)

    wrap(_connect, "connect", 4)
    wrap(_send, "send", 3)
    wrap(_recv, "recv", 4)
    wrap(_close, "close", 1)
    wrap(_error, "error", 2)


class _Guest:
    """Bounds-checked access to the calling instance's memory."""

    def __init__(self, caller: wasmtime.Caller, memory: wasmtime.Memory) -> None:
        self.caller = caller
        self.memory = memory

    def _check(self, ptr: int, size: int) -> None:
        if ptr + size > self.memory.data_len(self.caller):
            raise NetError(EFAULT, f"buffer {ptr}+{size} is outside the module's memory")

    def read(self, ptr: int, size: int) -> bytes:
        self._check(ptr, size)
        return bytes(self.memory.read(self.caller, ptr, ptr + size))

    def write(self, ptr: int, data: bytes) -> None:
        self._check(ptr, len(data))
        self.memory.write(self.caller, data, ptr)


def _connect(session: NetSession, guest: _Guest, ptr: int, size: int, port: int,
             tls: int) -> int:
    if size == 0 or size > MAX_HOST:
        raise NetError(EINVAL, f"a host name of {size} bytes")
    try:
        host = guest.read(ptr, size).decode("ascii")
    except UnicodeDecodeError:
        raise NetError(EINVAL, "a host name that is not ASCII") from None
    if port >= 1 << 31:
        port -= 1 << 32  # a negative C int
    return session.connect(host, port, bool(tls))


def _send(session: NetSession, guest: _Guest, handle: int, ptr: int, size: int) -> int:
    return session.send(handle, guest.read(ptr, min(size, MAX_IO)))


def _recv(session: NetSession, guest: _Guest, handle: int, ptr: int, size: int,
          timeout_ms: int) -> int:
    size = min(size, MAX_IO)
    guest.read(ptr, size)  # a bad buffer fails before anything is consumed from the socket
    if timeout_ms >= 1 << 31:
        timeout = session.net.read_timeout  # negative: as long as net.read_timeout allows
    else:
        timeout = min(timeout_ms / 1000, session.net.read_timeout)
    data = session.recv(handle, size, timeout)
    guest.write(ptr, data)
    return len(data)


def _close(session: NetSession, guest: _Guest, handle: int) -> int:
    session.close_handle(handle)
    return 0


def _error(session: NetSession, guest: _Guest, ptr: int, size: int) -> int:
    text = session.last_error.encode()
    if size:
        guest.write(ptr, text[: size - 1] + b"\0")
    return len(text)


def open_session(service: str, net: Net, app: AppSockets,
                 resolve_ca: Callable[[str], Path]) -> NetSession:
    """The session a spawn of `service` gets (one that refuses everything when `net` lists
    nothing); it opens nothing until the guest connects."""
    return NetSession(service, net, app, resolve_ca(net.ca) if net.ca else None)


"""Services' allow-listed outbound TCP and host TLS (`wvwasi_net`, runtime/host/net.py), against
servers on loopback only: a listed address echoes, anything else is refused before a packet
leaves, names that resolve to special addresses are refused (DNS rebinding), TLS is verified by
the host, the socket bounds hold, terminate() ends a blocked recv, and a hostile guest's bad
pointers and lengths get errors."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hostutil import WAIT

from wvwasi.runtime.host import net
from wvwasi.runtime.manifest import Net, load_manifest, parse_endpoint

EACCES, EAGAIN, EBADF, EFAULT, EINVAL, EMFILE, EPROTO = 2, 6, 8, 21, 28, 33, 65


class Server:
    """A loopback TCP server on its own thread: counts connections, echoes (or stays silent)."""

    def __init__(self, *, echo: bool = True, tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed = 0
        self.echo = echo
        self.tls = tls
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(WAIT)
            while data := conn.recv(65536):
                if self.echo:
                    conn.sendall(data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()
            self.closed += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture
def net_host(make_project: Callable[..., Path], make_host: Callable[..., Any]) -> Callable:
    """`net_host(net_table, limits=None, files=None) -> ServiceHost` with one `net_client` task
    service (`files` are written into the project folder, which is $RESOURCES)."""

    def make(net_table: dict[str, Any] | None, limits: dict | None = None,
             files: dict[str, bytes] | None = None) -> Any:
        service: dict[str, Any] = {"source": "net_client"}
        if net_table is not None:
            service["net"] = net_table
        root = make_project({"c": service}, extra={"limits": limits} if limits else None)
        for name, data in (files or {}).items():
            (root / name).write_bytes(data)
        return make_host(load_manifest(root)).start()

    return make


def run(host: Any, *ops: object) -> list[str]:
    result = host.run_task("c", options=_args(ops))
    assert result.error is None and result.exit_code == 0, result
    return result.stdout.decode().splitlines()


def _args(ops: tuple[object, ...]) -> Any:
    from wvwasi.runtime.host.service_host import SpawnOptions

    return SpawnOptions(args=tuple(str(o) for o in ops))


def test_echo_through_a_listed_address(net_host: Callable, server: Server) -> None:
    host = net_host({"connect": [f"127.0.0.1:{server.port}"]})
    out = run(host, "connect", "127.0.0.1", server.port, "send", "hello", "recv", 5000, "close")
    assert out == ["h=0", "sent=5", "recv=5 hello", "close=0"]
    assert server.accepted == 1


def test_unlisted_targets_are_refused_before_any_packet(
    net_host: Callable, server: Server
) -> None:
    other = Server()
    looked_up: list[str] = []
    try:
        host = net_host({"connect": [f"127.0.0.1:{server.port}", "api.example.com:443"]})
        host.sockets.resolver = lambda name, port: looked_up.append(name) or []
        out = run(host, "connect", "127.0.0.1", other.port, "connect", "evil.example", 443,
                  "connect", "api.example.com", 80, "connect", "localhost", server.port)
        assert [line.split(" ", 1)[0] for line in out] == ["err=2"] * 4
        assert f"127.0.0.1:{other.port} is not in net.connect" in out[0]
        time.sleep(0.3)  # a connection, had one been made, would have been accepted by now
        assert other.accepted == 0 and server.accepted == 0
        assert looked_up == []  # not even a name lookup left the host
    finally:
        other.close()


def test_a_service_without_net_has_no_network(net_host: Callable, server: Server) -> None:
    out = run(net_host(None), "connect", "127.0.0.1", server.port)
    assert out == ["err=2 this service has no network (its net.connect lists nothing)"]
    assert server.accepted == 0


def test_a_listed_name_resolving_to_a_special_address_is_refused(
    net_host: Callable, server: Server
) -> None:
    """DNS rebinding: `localhost` is listed, but it resolves to loopback, which is not."""
    host = net_host({"connect": [f"localhost:{server.port}"]})
    out = run(host, "connect", "localhost", server.port)
    assert out[0].startswith("err=2 localhost resolved to 127.0.0.1")
    assert "loopback, private or link-local" in out[0]
    host.sockets.resolver = lambda name, port: ["10.1.2.3", "169.254.1.1", "fd00::1"]
    out = run(host, "connect", "localhost", server.port)
    assert out[0].startswith("err=2 localhost resolved to 10.1.2.3, 169.254.1.1, fd00::1")
    assert server.accepted == 0


def test_a_name_whose_address_is_listed_too_connects(net_host: Callable, server: Server) -> None:
    host = net_host({"connect": [f"localhost:{server.port}", f"127.0.0.1:{server.port}"]})
    host.sockets.resolver = lambda name, port: ["127.0.0.1"]
    out = run(host, "connect", "localhost", server.port, "send", "hi", "recv", 5000)
    assert out == ["h=0", "sent=2", "recv=2 hi"]


def test_allow_list_matching() -> None:
    rules = Net(connect=tuple(parse_endpoint(e) for e in (
        "api.example.com:443", "*.example.org:443", "[::1]:8080", "10.0.0.5:22")))
    assert net.check_target(rules, "API.Example.com.", 443) == "api.example.com"
    assert net.check_target(rules, "a.b.example.org", 443) == "a.b.example.org"
    assert net.check_target(rules, "[::1]", 8080) == "::1"
    assert net.check_target(rules, "0:0::1", 8080) == "::1"
    assert net.check_target(rules, "10.0.0.5", 22) == "10.0.0.5"
    for host, port in (("example.org", 443), ("api.example.com", 444), ("xexample.org", 443),
                       ("api.example.com.evil", 443), ("10.0.0.6", 22), ("::2", 8080)):
        with pytest.raises(net.NetError) as e:
            net.check_target(rules, host, port)
        assert e.value.code == EACCES
    # A listed special address may be reached through a name; a public one always may.
    assert net.vet_addresses(rules, "x", 22, ["10.0.0.5"]) == ("10.0.0.5",)
    assert net.vet_addresses(rules, "x", 443, ["93.184.215.14"]) == ("93.184.215.14",)
    for special in ("127.0.0.2", "192.168.1.1", "169.254.169.254", "::ffff:127.0.0.1",
                    "100.64.0.1", "0.0.0.0", "fe80::1", "224.0.0.1"):
        with pytest.raises(net.NetError):
            net.vet_addresses(rules, "x", 443, [special])


@pytest.mark.parametrize(("entry", "message"), [
    ("example.com", 'expected "host:port"'),
    ("example.com:0", "port from 1 to 65535"),
    ("example.com:99999", "port from 1 to 65535"),
    ("*.com:443", "is not a host name"),
    ("exa mple.com:443", "is not a host name"),
    ("[::zz]:80", "is not an IPv6 address"),
])
def test_bad_connect_entries_name_the_key(make_project: Callable[..., Path], entry: str,
                                          message: str) -> None:
    from wvwasi.runtime.manifest import ManifestError

    root = make_project({"c": {"source": "net_client", "net": {"connect": ["a.b:1", entry]}}})
    with pytest.raises(ManifestError) as e:
        load_manifest(root)
    assert "services.c.net.connect[1]" in str(e.value) and message in str(e.value)


# -- TLS -------------------------------------------------------------------------------------------


def _cert(subject: str, key: Any, issuer: x509.Name, issuer_key: Any, *, ca: bool,
          names: list[x509.GeneralName]) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj: Any) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def tls_setup(tmp_path: Path) -> Callable[[list[x509.GeneralName]], tuple[Server, bytes]]:
    """`tls_setup(names) -> (TLS echo server whose certificate has `names`, the CA's PEM)`."""
    servers: list[Server] = []

    def make(names: list[x509.GeneralName]) -> tuple[Server, bytes]:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wvwasi test CA")])
        ca = _cert("wvwasi test CA", ca_key, ca_name, ca_key, ca=True, names=[])
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert("server", key, ca_name, ca_key, ca=False, names=names)
        chain = tmp_path / f"server{len(servers)}.pem"
        chain.write_bytes(_pem(cert) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        servers.append(Server(tls=context))
        return servers[-1], _pem(ca)

    yield make
    for s in servers:
        s.close()


LOOPBACK = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]


def test_tls_verified_against_the_apps_ca(net_host: Callable, tls_setup: Callable) -> None:
    server, ca = tls_setup(LOOPBACK)
    host = net_host({"connect": [f"127.0.0.1:{server.port}"], "ca": "$RESOURCES/ca.pem"},
                    files={"ca.pem": ca})
    out = run(host, "tls", "127.0.0.1", server.port, "send", "secret", "recv", 5000, "close")
    assert out == ["h=0", "sent=6", "recv=6 secret", "close=0"]


def test_tls_without_the_ca_fails_verification(net_host: Callable, tls_setup: Callable) -> None:
    server, _ca = tls_setup(LOOPBACK)
    host = net_host({"connect": [f"127.0.0.1:{server.port}"]})
    out = run(host, "tls", "127.0.0.1", server.port)
    assert out[0].startswith(f"err={EPROTO} TLS to 127.0.0.1: ")
    assert "certificate" in out[0] and "issuer" in out[0]


def test_tls_with_the_wrong_host_name_fails(net_host: Callable, tls_setup: Callable) -> None:
    server, ca = tls_setup([x509.DNSName("other.test")])
    host = net_host({"connect": [f"127.0.0.1:{server.port}"], "ca": "$RESOURCES/ca.pem"},
                    files={"ca.pem": ca})
    out = run(host, "tls", "127.0.0.1", server.port)
    assert out[0].startswith(f"err={EPROTO} TLS to 127.0.0.1: ")
    assert "mismatch" in out[0]


# -- bounds ----------------------------------------------------------------------------------------


def test_sockets_per_instance_are_bounded(net_host: Callable, server: Server) -> None:
    host = net_host({"connect": [f"127.0.0.1:{server.port}"], "sockets": 3})
    assert run(host, "many", 5, "127.0.0.1", server.port) == [f"opened=3 err={EMFILE}"]


def test_sockets_per_app_are_bounded_and_returned(net_host: Callable, server: Server) -> None:
    host = net_host({"connect": [f"127.0.0.1:{server.port}"]}, limits={"sockets": 2})
    assert run(host, "many", 5, "127.0.0.1", server.port) == [f"opened=2 err={EMFILE}"]
    # The instance ended: its sockets were closed, so the next one gets the app's two again.
    assert run(host, "many", 2, "127.0.0.1", server.port) == ["opened=2 err=0"]
    deadline = time.monotonic() + WAIT
    while server.closed < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.closed == 4


def test_recv_times_out_with_eagain(net_host: Callable) -> None:
    silent = Server(echo=False)
    try:
        host = net_host({"connect": [f"127.0.0.1:{silent.port}"]})
        out = run(host, "connect", "127.0.0.1", silent.port, "recv", 0, "recv", 200)
        assert out == ["h=0", f"err={EAGAIN} no data yet", f"err={EAGAIN} recv timed out"]
    finally:
        silent.close()


def test_terminate_interrupts_a_blocked_recv(
    make_project: Callable[..., Path], make_host: Callable[..., Any]
) -> None:
    silent = Server(echo=False)
    try:
        project = make_project({"c": {
            "source": "net_client", "kind": "dedicated",
            "args": ["connect", "127.0.0.1", str(silent.port), "recv", "60000"],
            "net": {"connect": [f"127.0.0.1:{silent.port}"]}}})
        host = make_host(load_manifest(project)).start()
        inst = host.spawn("c")
        deadline = time.monotonic() + WAIT
        while silent.accepted == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # into the 60 s recv
        started = time.perf_counter()
        inst.terminate()
        exited = inst.wait(WAIT)
        took = time.perf_counter() - started
        assert exited is not None and exited.error is not None
        assert exited.error.kind == "terminated"
        assert took < 1.0, took  # the bound is 100 ms; this allows a loaded machine
    finally:
        silent.close()


def test_hostile_pointers_and_lengths_get_errors(net_host: Callable, server: Server) -> None:
    host = net_host({"connect": [f"127.0.0.1:{server.port}"]})
    out = run(host, "connect", "127.0.0.1", server.port, "bad_send_ptr", "bad_recv_ptr",
              "huge_host", "neg_port", "close_bad", "send", "ok", "recv", 5000)
    codes = [line.split(" ", 1)[0] for line in out]
    assert codes == ["h=0", f"err={EFAULT}", f"err={EFAULT}", f"err={EINVAL}", f"err={EINVAL}",
                     f"close=-{EBADF}", "sent=2", "recv=2"]


RUST_MAIN = """
mod net;
use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args[2].parse().unwrap();
    match net::Conn::connect(&args[1], port) {
        Ok(mut conn) => {
            conn.write_all(args[3].as_bytes()).unwrap();
            let mut buf = vec![0u8; args[3].len()];
            conn.read_exact(&mut buf).unwrap();
            println!("echo {}", String::from_utf8_lossy(&buf));
        }
        Err(e) => println!("error {:?}: {}", e.kind(), e),
    }
}
"""


def test_the_rust_templates_net_module(
    tmp_path: Path, make_project: Callable[..., Path], make_host: Callable[..., Any],
    server: Server,
) -> None:
    """templates/new/rust/services/net.rs, compiled by the template's own rustc wrapper."""
    import shutil
    import subprocess

    template = Path(__file__).resolve().parents[1] / "templates" / "new" / "rust"
    src = tmp_path / "rust"
    src.mkdir()
    shutil.copyfile(template / "services" / "net.rs", src / "net.rs")
    (src / "main.rs").write_text(RUST_MAIN)
    subprocess.run(["sh", str(template / "tools" / "rustc-wasi"), "-O", "-C", "strip=symbols",
                    "main.rs", "-o", "main.wasm"], cwd=src, check=True)
    project = make_project({"r": {"source": src / "main.wasm",
                                  "net": {"connect": [f"127.0.0.1:{server.port}"]}}})
    host = make_host(load_manifest(project)).start()
    from wvwasi.runtime.host.service_host import SpawnOptions

    ok = host.run_task("r", options=SpawnOptions(args=("127.0.0.1", str(server.port), "hi")))
    assert ok.stdout == b"echo hi\n", ok
    refused = host.run_task("r", options=SpawnOptions(args=("127.0.0.1", "1", "hi")))
    assert refused.stdout.startswith(b"error PermissionDenied: 127.0.0.1:1 is not in "
                                     b"net.connect"), refused


def test_web_builds_refuse_net(make_project: Callable[..., Path]) -> None:
    from wvwasi.packager.web import web_problems

    root = make_project({"c": {"source": "net_client", "net": {"connect": ["a.example:443"]}},
                         "quiet": {"source": "net_client"}})
    problems = web_problems(load_manifest(root, platform="web"), "wvwasi.toml")
    assert problems == ["wvwasi.toml: services.c.net: a web page cannot give a service sockets "
                        "(remove net under [target.web]; call the server from the page with "
                        "fetch instead)"]

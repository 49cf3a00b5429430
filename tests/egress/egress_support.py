"""Helpers and fixtures for egress integration tests.

Safety: the whole module runs with the test process moved into a private network
namespace (the "host" of these tests), so nothing here can reach a real network;
"outside" hosts and fake metadata services live in namespaces the fixtures create.
"""

from __future__ import annotations

import ctypes
import hashlib
import http.server
import io
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from corral.egress import NetworkAttachment
from corral.egress._nsutil import CLONE_NEWNET, in_netns, setns

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE, MS_BIND = 16384, 1 << 18, 4096
SANDBOX_UID = 65534


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


@pytest.fixture(scope="module")
def private_host() -> Iterator[None]:
    """Move this process (its main thread and every thread/child it starts later) to a fresh netns."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    assert _libc.unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET) failed: tests need root"
    sh("ip", "link", "set", "lo", "up")
    try:
        yield
    finally:
        setns(back)
        os.close(back)


@dataclass
class Listener:
    """A TCP/UDP listener that records whoever reaches it."""

    seen: list[tuple[str, int]] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)


@dataclass
class OutsideHost:
    name: str
    ns_fd: int
    host_ip: str  # host side of the link (an address of "the host")
    ip: str  # the outside host's address
    ip6: str
    listeners: dict[str, Listener]
    http_peers: list[tuple[str, int]]
    servers: list[socketserver.BaseServer]


def _serve(server: socketserver.BaseServer) -> None:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def _recording_tcp(listener: Listener) -> type[socketserver.BaseRequestHandler]:
    class H(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            listener.seen.append(self.client_address[:2])
            self.request.settimeout(1)
            try:
                self.request.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                listener.data.append(self.request.recv(1024))
            except OSError:
                pass

    return H


def _recording_udp(listener: Listener) -> type[socketserver.BaseRequestHandler]:
    class H(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            listener.seen.append(self.client_address[:2])
            listener.data.append(self.request[0])

    return H


def _http_handler(
    peers: list[tuple[str, int]], body: bytes, routes: Mapping[str, bytes]
) -> type[http.server.BaseHTTPRequestHandler]:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peers.append(self.client_address[:2])
            data = routes.get(self.path, body + self.path.encode())
            self.send_response(200)
            self.send_header(
                "Content-Type", "text/html" if self.path.endswith("/") else "application/octet-stream"
            )
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return H


class _TCP(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class _TCP6(_TCP):
    address_family = socket.AF_INET6


class _UDP(socketserver.ThreadingUDPServer):
    allow_reuse_address = True


def make_outside(
    name: str, host_if: str, subnet: int, ips: Sequence[str] = (), tls: tuple[str, str] | None = None
) -> OutsideHost:
    """A namespace reachable from the test's host netns over a veth: 198.18.<subnet>.0/30 (+ extra IPs)."""
    host_ip, ip = f"198.18.{subnet}.1", f"198.18.{subnet}.2"
    ip6 = f"fd00:c0:{subnet}::2"
    sh("ip", "netns", "add", name)
    sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name)
    sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
    sh("ip", "-6", "addr", "add", f"fd00:c0:{subnet}::1/64", "dev", host_if, "nodad")
    sh("ip", "link", "set", host_if, "up")
    sh("ip", "-n", name, "link", "set", "lo", "up")
    sh("ip", "-n", name, "addr", "add", f"{ip}/30", "dev", "eth0")
    sh("ip", "-n", name, "-6", "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad")
    for extra in ips:
        sh("ip", "-n", name, "addr", "add", f"{extra}/32", "dev", "eth0")
        sh("ip", "route", "add", f"{extra}/32", "via", ip)
    sh("ip", "-n", name, "link", "set", "eth0", "up")
    sh("ip", "-n", name, "route", "add", "default", "via", host_ip)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    listeners = {k: Listener() for k in ("ssh", "pool", "udp", "ssh6")}
    peers: list[tuple[str, int]] = []
    servers: list[socketserver.BaseServer] = []
    with in_netns(fd):
        servers.append(_TCP(("0.0.0.0", 22), _recording_tcp(listeners["ssh"])))
        servers.append(_TCP(("0.0.0.0", 3333), _recording_tcp(listeners["pool"])))
        servers.append(_UDP(("0.0.0.0", 5353), _recording_udp(listeners["udp"])))
        servers.append(_TCP6(("::", 2222), _recording_tcp(listeners["ssh6"])))
        routes = package_index()
        servers.append(
            http.server.ThreadingHTTPServer(("0.0.0.0", 80), _http_handler(peers, b"hello from ", routes))
        )
        if tls is not None:
            https = http.server.ThreadingHTTPServer(
                ("0.0.0.0", 443), _http_handler(peers, b"tls hello from ", routes)
            )
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            https.socket = ctx.wrap_socket(https.socket, server_side=True)
            servers.append(https)
    for s in servers:
        _serve(s)
    return OutsideHost(name, fd, host_ip, ip, ip6, listeners, peers, servers)


def _wheel() -> bytes:
    files = {
        "tinypkg/__init__.py": b"VALUE = 42\n",
        "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + "tinypkg-0.1.dist-info/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
        z.writestr("tinypkg-0.1.dist-info/RECORD", record)
    return buf.getvalue()


def package_index() -> dict[str, bytes]:
    """A PEP 503 simple index with one wheel, served by the outside host."""
    wheel = _wheel()
    digest = hashlib.sha256(wheel).hexdigest()
    page = f'<a href="/files/tinypkg-0.1-py3-none-any.whl#sha256={digest}">tinypkg-0.1-py3-none-any.whl</a>'
    return {
        "/simple/tinypkg/": f"<html><body>{page}</body></html>".encode(),
        "/files/tinypkg-0.1-py3-none-any.whl": wheel,
    }


def remove_outside(o: OutsideHost) -> None:
    for s in o.servers:
        s.shutdown()
        s.server_close()
    os.close(o.ns_fd)
    sh("ip", "netns", "del", o.name, check=False)


@pytest.fixture(scope="module")
def tls_cert() -> Iterator[tuple[str, str]]:
    d = shared_tmpdir()
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=pkg.test",
       "-addext", "subjectAltName=DNS:pkg.test")  # fmt: skip
    os.chmod(cert, 0o644)
    yield cert, key
    shutil.rmtree(d)


def shared_tmpdir(mode: int = 0o755) -> str:
    """A directory the sandbox uid can reach (pytest's tmp dirs sit under a root-only parent)."""
    d = tempfile.mkdtemp(prefix="corral-egress-test-")
    os.chmod(d, mode)
    return d


@pytest.fixture(scope="module")
def outside(private_host: None, tls_cert: tuple[str, str]) -> Iterator[OutsideHost]:
    o = make_outside(f"ct-out-{os.getpid()}", "ctouth", 7, tls=tls_cert)
    yield o
    remove_outside(o)


@pytest.fixture(scope="module")
def metadata(private_host: None) -> Iterator[OutsideHost]:
    """A fake metadata service owning the cloud metadata addresses, in a namespace of the test's own."""
    o = make_outside(f"ct-meta-{os.getpid()}", "ctmetah", 9, ips=("169.254.169.254", "100.100.100.200"))
    yield o
    remove_outside(o)


def sandbox_run(
    att: NetworkAttachment, argv: Sequence[str], timeout: float = 15, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Launch as the sandbox does: setns into the netns, bind the attachment's files, drop to uid 65534."""
    fd = os.open(att.netns_path, os.O_RDONLY)
    files = dict(att.files)

    def pre() -> None:
        if _libc.setns(fd, CLONE_NEWNET) != 0 or _libc.unshare(CLONE_NEWNS) != 0:
            os._exit(120)
        _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None)
        for inside, host in files.items():
            if _libc.mount(host.encode(), inside.encode(), None, MS_BIND, None) != 0:
                os._exit(121)
        os.setgroups([])
        os.setgid(SANDBOX_UID)
        os.setuid(SANDBOX_UID)

    full_env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **att.env, **(env or {})}
    try:
        return subprocess.run(
            list(argv),
            preexec_fn=pre,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/tmp",
        )
    finally:
        os.close(fd)


@pytest.fixture
def run_in() -> Callable[..., subprocess.CompletedProcess[str]]:
    return sandbox_run

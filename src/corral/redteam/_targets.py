"""Fake targets that record everything that reaches them: relay, mining pool, metadata, upload, DNS, ...

All servers run on one asyncio loop in a daemon thread. Each listening socket is
created inside its target's network namespace (a socket stays in the netns it
was made in), so one loop serves every namespace. "Blocked" for a network
scenario means its targets recorded nothing while it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

from dnslib import RCODE, DNSRecord

from corral.redteam._netlab import in_netns

_READ_MAX = 64 * 1024
_IO_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Seen:
    """One thing a target observed."""

    target: str
    peer: str
    time_ns: int
    detail: str


@dataclass
class Recorder:
    """Thread-safe log of what every target saw."""

    _seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, target: str, peer: object, detail: str) -> None:
        p = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer or "")
        with self._lock:
            self._seen.append(Seen(target, p, time.time_ns(), detail[:300]))

    def mark(self) -> int:
        with self._lock:
            return len(self._seen)

    def since(self, mark: int) -> list[Seen]:
        with self._lock:
            return list(self._seen[mark:])


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Callable[[str], None]], Awaitable[None]]


async def _relay(r: asyncio.StreamReader, w: asyncio.StreamWriter, note: Callable[[str], None]) -> None:
    """A reverse-shell catcher: sends one harmless command, records whatever comes back."""
    w.write(b"echo corral-redteam-relay\n")
    await w.drain()
    data = await asyncio.wait_for(r.read(_READ_MAX), _IO_TIMEOUT_S)
    note(f"received {len(data)} bytes: {data[:80]!r}")


async def _stratum(r: asyncio.StreamReader, w: asyncio.StreamWriter, note: Callable[[str], None]) -> None:
    """Enough of the stratum protocol for a miner to subscribe, authorize and get a job."""
    for _ in range(8):
        line = await asyncio.wait_for(r.readline(), _IO_TIMEOUT_S)
        if not line:
            return
        try:
            msg = json.loads(line)
        except ValueError:
            note(f"non-JSON line {line[:60]!r}")
            return
        method, mid = msg.get("method"), msg.get("id")
        note(f"stratum {method} params={str(msg.get('params'))[:80]}")
        if method == "mining.subscribe":
            reply: dict[str, object] = {"id": mid, "result": [[["mining.notify", "rt1"]], "08000002", 4]}
        elif method == "mining.authorize":
            reply = {"id": mid, "result": True, "error": None}
        else:
            reply = {"id": mid, "result": None, "error": [20, "unknown method", None]}
        w.write(json.dumps(reply).encode() + b"\n")
        if method == "mining.authorize":
            job = {
                "id": None,
                "method": "mining.notify",
                "params": ["rt-job", "00" * 32, "", "", [], "1", "1", "1", True],
            }
            w.write(json.dumps(job).encode() + b"\n")
        await w.drain()


async def _http_request(r: asyncio.StreamReader) -> tuple[str, int]:
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), _IO_TIMEOUT_S)
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for h in lines[1:]:
        k, _, v = h.partition(":")
        if k.strip().lower() == "content-length" and v.strip().isdigit():
            length = int(v.strip())
    body = 0
    while body < length:
        chunk = await asyncio.wait_for(r.read(min(_READ_MAX, length - body)), _IO_TIMEOUT_S)
        if not chunk:
            break
        body += len(chunk)
    return lines[0], body


def _http(body_for: Callable[[str], bytes]) -> Handler:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, note: Callable[[str], None]) -> None:
        first, size = await _http_request(r)
        note(f"{first} ({size} body bytes)")
        parts = first.split(" ")
        body = body_for(parts[1] if len(parts) > 1 else "/")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n")
        w.write(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await w.drain()

    return handle


def _metadata_body(path: str) -> bytes:
    if "security-credentials" in path or "token" in path or "sts" in path.lower():
        return json.dumps(
            {"AccessKeyId": "ASIAREDTEAMFAKEKEY", "SecretAccessKey": "corral-redteam-fake", "Token": "fake"}
        ).encode()
    return b"ami-id\ninstance-id\niam/\n"


async def _redis(r: asyncio.StreamReader, w: asyncio.StreamWriter, note: Callable[[str], None]) -> None:
    data = await asyncio.wait_for(r.read(_READ_MAX), _IO_TIMEOUT_S)
    note(f"redis {data[:80]!r}")
    w.write(b"$23\r\n# Server\r\nredis_version:7.0\r\n")
    await w.drain()


async def _banner(r: asyncio.StreamReader, w: asyncio.StreamWriter, note: Callable[[str], None]) -> None:
    note("connected")
    w.write(b"corral-redteam\n")
    await w.drain()
    with contextlib.suppress(TimeoutError, OSError):
        data = await asyncio.wait_for(r.read(_READ_MAX), 0.5)
        if data:
            note(f"received {len(data)} bytes")


HANDLERS: dict[str, Handler] = {
    "relay": _relay,
    "stratum": _stratum,
    "upload": _http(lambda p: b"stored\n"),
    "metadata": _http(_metadata_body),
    "etcd": _http(lambda p: b'{"action":"get","node":{"key":"/registry","dir":true}}\n'),
    "redis": _redis,
    "banner": _banner,
}


@dataclass(frozen=True)
class Service:
    """One listener: who it is (``target``), where it listens, and which protocol it speaks."""

    target: str
    netns_path: str | None  # None: the runner's own netns (the lab), for host canaries
    family: str  # tcp, udp, unix
    address: str  # IP, or a filesystem path / "@abstract" name for unix sockets
    port: int = 0
    protocol: str = "banner"


class TargetServers:
    """The asyncio loop thread that serves every target; ``stop`` closes every socket."""

    def __init__(self, services: list[Service], recorder: Recorder) -> None:
        self.recorder = recorder
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main, args=(services,), name="corral-redteam-targets", daemon=True
        )
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error

    def _main(self, services: list[Service]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start(services))
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _start(self, services: list[Service]) -> None:
        for s in services:
            sock = self._socket(s)
            if s.family == "udp":
                tr, _ = await self._loop.create_datagram_endpoint(self._dns_factory(s.target), sock=sock)
                self._transports.append(tr)
            else:
                cb = self._stream_cb(s)
                if s.family == "unix":
                    srv = await asyncio.start_unix_server(cb, sock=sock)
                else:
                    srv = await asyncio.start_server(cb, sock=sock)
                self._servers.append(srv)

    def _dns_factory(self, target: str) -> Callable[[], _DnsReceiver]:
        return lambda: _DnsReceiver(target, self.recorder)

    def _socket(self, s: Service) -> socket.socket:
        def make() -> socket.socket:
            if s.family == "unix":
                sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sk.bind("\0" + s.address[1:] if s.address.startswith("@") else s.address)
                sk.listen(16)
            else:
                kind = socket.SOCK_DGRAM if s.family == "udp" else socket.SOCK_STREAM
                sk = socket.socket(socket.AF_INET, kind)
                sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sk.bind((s.address, s.port))
                if kind == socket.SOCK_STREAM:
                    sk.listen(64)
            sk.setblocking(False)
            return sk

        if s.netns_path is None:
            return make()
        with in_netns(s.netns_path):
            return make()

    def _stream_cb(
        self, s: Service
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        handler = HANDLERS[s.protocol]

        async def cb(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            peer = w.get_extra_info("peername") or "unix"
            self.recorder.add(s.target, peer, f"{s.family} connection to {s.address}:{s.port}")
            try:
                await handler(r, w, lambda d: self.recorder.add(s.target, peer, d))
            except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass
            finally:
                w.close()

        return cb

    def stop(self) -> None:
        async def _close() -> None:
            for srv in self._servers:
                srv.close()
            for tr in self._transports:
                tr.close()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class _DnsReceiver(asyncio.DatagramProtocol):
    """A DNS exfiltration receiver: records every query name, answers NXDOMAIN."""

    def __init__(self, target: str, recorder: Recorder) -> None:
        self.target, self.recorder = target, recorder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        try:
            q = DNSRecord.parse(data)
            name = str(q.q.qname)
            reply = q.reply()
            reply.header.rcode = RCODE.NXDOMAIN
            out = reply.pack()
        except Exception:  # a malformed query is still evidence that something reached us
            name, out = f"<{len(data)} undecodable bytes>", b""
        self.recorder.add(self.target, addr, f"dns query {name}")
        if out and self.transport is not None:
            self.transport.sendto(out, addr)

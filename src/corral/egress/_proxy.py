"""The thin asyncio server around ``Flow``: sockets in, events to the flow, its commands carried out."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from corral.egress._dns import Resolver
from corral.egress._flow import (
    Account,
    ClientClosed,
    ClientData,
    CloseAll,
    Connected,
    ConnectFailed,
    Dial,
    Flow,
    FlowEvent,
    Record,
    RequestTimeout,
    Resolve,
    Resolved,
    ResolveFailed,
    SendClient,
    SendServer,
    ServerClosed,
    ServerData,
)
from corral.egress._rules import Rules
from corral.events import TraceContext

IP_FREEBIND = 15
DIAL_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 20.0  # a connection with no complete request by then is refused (and recorded)
READ_CHUNK = 64 * 1024


def listening_socket(kind: socket.SocketKind, address: str, port: int) -> socket.socket:
    """A socket bound to ``address`` even before any interface carries it (IP_FREEBIND)."""
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        s.bind((address, port))
        if kind == socket.SOCK_STREAM:
            s.listen(512)
        s.setblocking(False)
        return s
    except BaseException:
        s.close()
        raise


class FlowOwner(Protocol):
    """What the proxy needs to know about the sandbox a connection came from."""

    account: Account
    ctx: TraceContext

    def record(self, rec: Record, start_ns: int, client: tuple[str, int], ctx: TraceContext) -> None: ...

    def track(self, closer: Callable[[], None]) -> Callable[[], None]: ...


class ProxyServer:
    def __init__(self, rules: Rules, owner_of: Callable[[str], FlowOwner | None], resolve: Resolver) -> None:
        self._rules = rules
        self._owner_of = owner_of
        self._resolve = resolve
        self.server: asyncio.Server | None = None

    async def start(self, address: str, port: int) -> None:
        sock = listening_socket(socket.SOCK_STREAM, address, port)
        self.server = await asyncio.start_server(self._handle, sock=sock)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        owner = self._owner_of(str(peer[0])) if peer else None
        if owner is None:  # not from a sandbox this egress knows: say nothing
            writer.close()
            return
        await _Conn(self._rules, owner, self._resolve, reader, writer, (str(peer[0]), int(peer[1]))).run()


class _Conn:
    def __init__(
        self,
        rules: Rules,
        owner: FlowOwner,
        resolve: Resolver,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: tuple[str, int],
    ) -> None:
        self.flow = Flow(rules, owner.account)
        self.owner, self.resolve, self.client = owner, resolve, client
        self.reader, self.writer = reader, writer
        self.events: asyncio.Queue[FlowEvent] = asyncio.Queue()
        self.server_writer: asyncio.StreamWriter | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.start_ns = time.time_ns()
        self.ctx = owner.ctx  # the call that opened the flow owns it, even if the flow outlives the call
        self.closed = False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = asyncio.ensure_future(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, server_side: bool) -> None:
        try:
            while data := await reader.read(READ_CHUNK):
                self.events.put_nowait(ServerData(data) if server_side else ClientData(data))
        except (ConnectionError, OSError):
            pass
        self.events.put_nowait(ServerClosed() if server_side else ClientClosed())

    async def _do_resolve(self, host: str) -> None:
        static = self.flow.rules.section.hosts.get(host.lower().rstrip("."))
        try:
            addrs = static if static is not None else await self.resolve(host)
            self.events.put_nowait(Resolved(tuple(addrs)))
        except OSError as exc:
            self.events.put_nowait(ResolveFailed(type(exc).__name__))

    async def _do_dial(self, ip: str, port: int) -> None:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(ip, port), DIAL_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            self.events.put_nowait(ConnectFailed(type(exc).__name__))
            return
        self.server_writer = w
        local, remote = w.get_extra_info("sockname"), w.get_extra_info("peername")
        self.events.put_nowait(Connected(str(local[0]), int(local[1]), str(remote[0]), int(remote[1])))
        self._spawn(self._pump(r, server_side=True))

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for w in (self.writer, self.server_writer):
            if w is not None:
                with contextlib.suppress(Exception):
                    w.close()

    async def _request_timer(self) -> None:
        await asyncio.sleep(REQUEST_TIMEOUT_S)
        self.events.put_nowait(RequestTimeout())

    async def run(self) -> None:
        untrack = self.owner.track(lambda: self.events.put_nowait(ClientClosed()))
        self._spawn(self._pump(self.reader, server_side=False))
        self._spawn(self._request_timer())
        try:
            while not self.closed:
                for cmd in self.flow.handle(await self.events.get()):
                    await self._execute(cmd)
        finally:
            untrack()
            self._close()
            for t in list(self.tasks):
                t.cancel()

    async def _execute(self, cmd: object) -> None:
        if isinstance(cmd, SendClient):
            self.writer.write(cmd.data)
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.drain()
        elif isinstance(cmd, SendServer) and self.server_writer is not None:
            self.server_writer.write(cmd.data)
            with contextlib.suppress(ConnectionError, OSError):
                await self.server_writer.drain()
        elif isinstance(cmd, Resolve):
            self._spawn(self._do_resolve(cmd.host))
        elif isinstance(cmd, Dial):
            self._spawn(self._do_dial(cmd.ip, cmd.port))
        elif isinstance(cmd, Record):
            self.owner.record(cmd, self.start_ns, self.client, self.ctx)
        elif isinstance(cmd, CloseAll):
            if self.server_writer is not None and self.server_writer.can_write_eof():
                with contextlib.suppress(Exception):
                    await self.writer.drain()
            self._close()

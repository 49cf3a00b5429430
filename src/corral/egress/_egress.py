"""``Egress``: one per harness process. Owns the event loop thread (proxy, DNS, NFLOG readers),
the claimed address block and the warm pool of sandbox network namespaces.

Threads: the caller's thread creates and destroys namespaces; the loop thread does all
socket I/O and emits events (``emit`` must be safe to call from another thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psutil

from corral.egress._attachment import NetworkAttachment
from corral.egress._dns import DnsProtocol, Resolver, answer, system_resolve
from corral.egress._flow import Account, Record
from corral.egress._netns import (
    DEFAULT_BASE,
    LOCK_DIR,
    Block,
    Slot,
    claim_block,
    create_slot,
    destroy_slot,
    release_block,
)
from corral.egress._nflog import LoggedPacket, parse_messages
from corral.egress._nft import TABLE, run_nft
from corral.egress._nsutil import in_netns
from corral.egress._proxy import ProxyServer, listening_socket
from corral.egress._rules import Rules, parse_ip
from corral.errors import EgressError
from corral.events import DnsQuery, Event, Health, NetworkConnection, TraceContext
from corral.policy import Policy

T = TypeVar("T")
DEDUP_WINDOW_S = 120.0


@dataclass
class _Attached:
    """A sandbox's live state on the loop thread."""

    egress: Egress
    sandbox_id: str
    slot: Slot
    account: Account
    ctx: TraceContext = field(default_factory=TraceContext)
    dns_queries: int = 0
    closers: set[Callable[[], None]] = field(default_factory=set)
    seen: dict[tuple[object, ...], float] = field(default_factory=dict)

    # FlowOwner protocol (used by the proxy)
    def record(self, rec: Record, start_ns: int, client: tuple[str, int], ctx: TraceContext) -> None:
        host_is_ip = rec.host is not None and parse_ip(rec.host) is not None
        out = rec.outside
        self.egress.emit_event(
            self,
            NetworkConnection(
                Protocol="tcp",
                DestinationIp=rec.ip,
                DestinationPort=rec.port,
                DestinationHostname=None if host_is_ip else rec.host,
                SourceIp=client[0],
                SourcePort=client[1],
                decision=rec.decision,
                rule=rec.rule,
                layer="proxy",
                proxy_protocol=rec.proxy_protocol,
                bytes_sent=rec.bytes_sent,
                bytes_received=rec.bytes_received,
                outside_src_ip=out.local_ip if out else None,
                outside_src_port=out.local_port if out else None,
                outside_dst_ip=out.remote_ip if out else None,
                outside_dst_port=out.remote_port if out else None,
            ),
            start_ns,
            ctx,
        )

    def track(self, closer: Callable[[], None]) -> Callable[[], None]:
        self.closers.add(closer)
        return lambda: self.closers.discard(closer)


class Egress:
    """Default-deny egress for every sandbox of one harness process."""

    def __init__(
        self, policy: Policy, emit: Callable[[Event], None], host: str | None, block: Block, pool_size: int
    ) -> None:
        self.policy = policy
        self.host = host
        self.block = block
        self.pool_size = pool_size
        self._emit = emit
        self._lock = threading.Lock()
        self._pool: list[Slot] = []
        self._free_indices: list[int] = []
        self._next_index = 1
        self._attached: dict[str, _Attached] = {}  # by sandbox IP; written on the loop thread
        self._slots: dict[int, Slot] = {}  # every live slot by index
        self._closed = False
        host_addrs = [
            a.address
            for addrs in psutil.net_if_addrs().values()
            for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)
        ]
        self.rules = Rules(policy.network, [*host_addrs, block.gateway])
        self.resolver: Resolver = system_resolve
        self.state_dir = os.path.join(LOCK_DIR, f"block-{block.index}")
        self.resolv_conf = os.path.join(self.state_dir, "resolv.conf")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="corral-egress", daemon=True)
        # Pool upkeep off the caller's path: refills after an attach, teardown (~25 ms of veth/RCU
        # work) after a release. ``None`` stops it.
        self._work: queue.SimpleQueue[Slot | str | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._run_worker, name="corral-egress-pool", daemon=True)
        self.proxy = ProxyServer(self.rules, self._owner_of, self._resolve)
        self._dns_transport: asyncio.DatagramTransport | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        policy: Policy,
        emit: Callable[[Event], None],
        *,
        host: str | None = None,
        pool_size: int = 2,
        base: str = DEFAULT_BASE,
        proxy_port: int = 3128,
        dns_port: int = 53,
    ) -> Egress:
        """Claim an address block, start proxy and DNS on its gateway, warm ``pool_size`` namespaces."""
        if os.geteuid() != 0:
            raise EgressError("egress needs root (network namespaces, veth, nftables)")
        block = claim_block(base, proxy_port, dns_port)
        self = cls(policy, emit, host, block, pool_size)
        try:
            os.makedirs(self.state_dir, exist_ok=True)
            with open(self.resolv_conf, "w") as f:
                f.write(f"nameserver {block.gateway}\noptions attempts:1 timeout:2\n")
            self._thread.start()
            self._worker.start()
            self._call(self._start_servers())
            for _ in range(pool_size):
                self._pool.append(self._new_slot())
        except BaseException:
            self.close()
            raise
        return self

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _start_servers(self) -> None:
        await self.proxy.start(self.block.gateway, self.block.proxy_port)
        sock = listening_socket(socket.SOCK_DGRAM, self.block.gateway, self.block.dns_port)
        transport, _ = await self.loop.create_datagram_endpoint(lambda: DnsProtocol(self._dns), sock=sock)
        self._dns_transport = transport

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        if not self._thread.is_alive():
            raise EgressError("egress event loop is not running")
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError as exc:
            fut.cancel()
            raise EgressError("egress event loop did not answer") from exc

    def close(self) -> None:
        """Stop serving and remove every namespace, veth and lock this egress made."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._worker.is_alive():
            self._work.put(None)
            self._worker.join(30)
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._shutdown())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        for slot in list(self._slots.values()):
            destroy_slot(slot)
        self._slots.clear()
        self._pool.clear()
        release_block(self.block)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def _run_worker(self) -> None:
        while (item := self._work.get()) is not None:
            try:
                if isinstance(item, Slot):
                    self._drop_slot(item)
                else:
                    self.refill()
            except Exception as exc:  # a failed refill only makes the next attach cold; say so
                health = Health(component="egress", status="degraded", message=f"pool upkeep failed: {exc}")
                with contextlib.suppress(Exception):
                    self._emit(Event(host=self.host, data=health))

    async def _shutdown(self) -> None:
        for st in list(self._attached.values()):
            for closer in list(st.closers):
                closer()
        for slot in self._slots.values():
            self.loop.remove_reader(slot.nflog.fileno())
        if self.proxy.server is not None:
            self.proxy.server.close()
        if self._dns_transport is not None:
            self._dns_transport.close()
        await asyncio.sleep(0)

    def __enter__(self) -> Egress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- slots and attachments --------------------------------------------------------------------------
    def _new_slot(self) -> Slot:
        with self._lock:
            if self._free_indices:
                index = self._free_indices.pop()
            elif self._next_index <= self.block.capacity:
                index, self._next_index = self._next_index, self._next_index + 1
            else:
                raise EgressError(f"all {self.block.capacity} sandbox network slots are in use")
        try:
            slot = create_slot(self.block, index)
        except BaseException:
            with self._lock:
                self._free_indices.append(index)
            raise
        self._slots[index] = slot
        self.loop.call_soon_threadsafe(self.loop.add_reader, slot.nflog.fileno(), self._read_nflog, slot)
        return slot

    def _drop_slot(self, slot: Slot) -> None:
        with contextlib.suppress(Exception):
            self._call(self._remove_reader(slot))
        self._slots.pop(slot.index, None)
        destroy_slot(slot)
        with self._lock:
            self._free_indices.append(slot.index)

    async def _remove_reader(self, slot: Slot) -> None:
        self.loop.remove_reader(slot.nflog.fileno())

    def attach(self, sandbox_id: str) -> NetworkAttachment:
        """A ready network namespace for one sandbox (warm when the pool has one)."""
        if self._closed:
            raise EgressError("egress is closed")
        with self._lock:
            slot = self._pool.pop() if self._pool else None
        if slot is None:
            slot = self._new_slot()
        self._work.put("refill")
        net = self.policy.network
        st = _Attached(self, sandbox_id, slot, Account(net.connections_max, net.transfer_max_bytes))
        try:
            self._call(self._register(st))
        except BaseException:
            self._drop_slot(slot)
            raise
        return NetworkAttachment(self, st)

    async def _register(self, st: _Attached) -> None:
        self._drain(st.slot)  # whatever an earlier user left in the log is not this sandbox's
        self._attached[st.slot.sandbox_ip] = st

    def release(self, st: _Attached) -> None:
        """Detach a sandbox: close its flows, then return its netns to the pool or destroy it."""
        with contextlib.suppress(EgressError):
            self._call(self._unregister(st))
        with self._lock:
            keep = not self._closed and len(self._pool) < self.pool_size
            if keep:
                self._pool.append(st.slot)
        if not keep and not self._closed:
            self._work.put(st.slot)

    async def _unregister(self, st: _Attached) -> None:
        self._drain(st.slot)
        for closer in list(st.closers):
            closer()
        self._attached.pop(st.slot.sandbox_ip, None)

    def refill(self) -> None:
        """Top the warm pool up to ``pool_size`` (call from a spare thread to keep attach fast)."""
        while not self._closed:
            with self._lock:
                if len(self._pool) >= self.pool_size:
                    return
            slot = self._new_slot()
            with self._lock:
                self._pool.append(slot)

    # -- loop-thread handlers ---------------------------------------------------------------------------
    def _owner_of(self, ip: str) -> _Attached | None:
        return self._attached.get(ip)

    async def _resolve(self, name: str) -> tuple[str, ...]:
        return await self.resolver(name)

    def emit_event(
        self,
        st: _Attached,
        payload: NetworkConnection | DnsQuery,
        time_ns: int | None = None,
        ctx: TraceContext | None = None,
    ) -> None:
        ev = Event(
            time_ns=time_ns or time.time_ns(),
            host=self.host,
            sandbox_id=st.sandbox_id,
            ctx=ctx or st.ctx,
            data=payload,
        )
        with contextlib.suppress(Exception):  # a failing sink must not kill the loop; the store reports it
            self._emit(ev)

    async def _dns(self, data: bytes, source_ip: str) -> bytes | None:
        st = self._attached.get(source_ip)
        if st is None:
            return None
        st.dns_queries += 1
        reply, out = await answer(
            self.rules, data, source_ip, self._resolve, st.dns_queries > self.policy.network.dns_queries_max
        )
        if out is not None:
            self.emit_event(
                st,
                DnsQuery(
                    QueryName=out.name,
                    QueryType=out.qtype,
                    decision="allowed" if out.decision == "allowed" else "denied",
                    rule=out.rule,
                    answers=list(out.answers),
                ),
            )
        return reply

    def _read_nflog(self, slot: Slot) -> None:
        try:
            data = slot.nflog.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # ENOBUFS: the kernel dropped log messages; the next read carries on
        self._handle_packets(slot, parse_messages(data))

    def _drain(self, slot: Slot) -> None:
        while True:
            try:
                data = slot.nflog.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self._handle_packets(slot, parse_messages(data))

    def _handle_packets(self, slot: Slot, packets: list[LoggedPacket]) -> None:
        st = self._attached.get(slot.sandbox_ip)
        if st is None:
            return
        now = time.monotonic()
        if len(st.seen) > 4096:  # forget attempts older than the window
            st.seen = {k: t for k, t in st.seen.items() if now - t < DEDUP_WINDOW_S}
        for p in packets:
            key = p.attempt_key()
            last = st.seen.get(key)
            st.seen[key] = now
            if last is not None and now - last < DEDUP_WINDOW_S:
                continue  # a retransmit of an attempt already recorded
            to_gw = p.dst == self.block.gateway
            self.emit_event(
                st,
                NetworkConnection(
                    Protocol=p.protocol,
                    DestinationIp=p.dst,
                    DestinationPort=p.dst_port,
                    SourceIp=p.src,
                    SourcePort=p.src_port,
                    decision="denied",
                    rule="nftables:host-port" if to_gw else "nftables:default-drop",
                    layer="nftables",
                    User=str(p.uid) if p.uid is not None else None,
                ),
            )

    async def _drain_async(self, slot: Slot) -> None:
        self._drain(slot)

    async def _health(self) -> str | None:
        if self.proxy.server is None or not self.proxy.server.is_serving():
            return "proxy is not serving"
        if self._dns_transport is None or self._dns_transport.is_closing():
            return "DNS resolver is not serving"
        return None

    # -- used by NetworkAttachment ----------------------------------------------------------------------
    def set_context(self, st: _Attached, ctx: TraceContext | None) -> None:
        with contextlib.suppress(EgressError):
            self._call(self._drain_async(st.slot))  # log lines so far belong to the previous context
        st.ctx = ctx or TraceContext()

    def health(self, st: _Attached) -> None:
        if self._closed:
            raise EgressError("egress is closed")
        problem = self._call(self._health(), timeout=2.0)
        if problem is None and not os.path.exists(st.slot.netns_path):
            problem = f"sandbox netns {st.slot.netns_path} is gone"
        if problem is None:
            try:
                with in_netns(st.slot.ns_fd):
                    run_nft(f"list chain inet {TABLE} output")
            except EgressError as exc:
                problem = f"the sandbox's nftables rules are missing ({exc})"
        if problem is not None:
            raise EgressError(f"egress failed ({problem}); the sandbox has no network")

    def env(self) -> Mapping[str, str]:
        gw, port = self.block.gateway, self.block.proxy_port
        http = f"http://{gw}:{port}"
        no_proxy = "localhost,127.0.0.1,::1"
        return {
            "HTTP_PROXY": http,
            "HTTPS_PROXY": http,
            "ALL_PROXY": f"socks5h://{gw}:{port}",
            "http_proxy": http,
            "https_proxy": http,
            "all_proxy": f"socks5h://{gw}:{port}",
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            "PIP_PROXY": http,
            "npm_config_proxy": http,
            "npm_config_https_proxy": http,
        }

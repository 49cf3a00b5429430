"""``Egress``: one per harness process. It composes the parts, each in its own module:
the claimed address block (``_netns``), the warm pool of sandbox namespaces (``_pool``), the
event loop thread (``_loop``) with the proxy, DNS and NFLOG sockets on it (``_servers``), and
the events each sandbox's traffic becomes (``_emission``).

Threads: the caller's thread creates and destroys namespaces; the loop thread does all
socket I/O and emits events (``emit`` must be safe to call from another thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Callable, Mapping

import psutil

from corral.egress._attachment import NetworkAttachment
from corral.egress._dns import Resolver, system_resolve
from corral.egress._emission import Attached, Emitter
from corral.egress._flow import Account
from corral.egress._loop import LoopThread
from corral.egress._netns import DEFAULT_BASE, Block, Slot, claim_block, release_block, state_dir
from corral.egress._nft import TABLE, run_nft
from corral.egress._nsutil import in_netns
from corral.egress._pool import SlotPool
from corral.egress._proxy import ProxyServer
from corral.egress._rules import Rules
from corral.egress._servers import Servers
from corral.errors import EgressError
from corral.events import Event, TraceContext
from corral.policy import Policy


def _host_addresses() -> list[str]:
    return [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family in (socket.AF_INET, socket.AF_INET6)
    ]


class Egress:
    """Default-deny egress for every sandbox of one harness process."""

    def __init__(
        self, policy: Policy, emit: Callable[[Event], None], host: str | None, block: Block, pool_size: int
    ) -> None:
        self.policy = policy
        self.host = host
        self.block = block
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._closed = False
        self.rules = Rules(policy.network, [*_host_addresses(), block.gateway])
        self.resolver: Resolver = system_resolve  # replaceable (tests point it at their own names)
        self.state_dir = state_dir(block.index)
        self.resolv_conf = os.path.join(self.state_dir, "resolv.conf")
        self.emitter = Emitter(emit, host)
        self._loop = LoopThread()
        self.servers = Servers(self.rules, block, self._resolve, policy.network.dns_queries_max)
        self.pool = SlotPool(
            block,
            pool_size,
            on_create=lambda slot: self._loop.soon(self.servers.watch, slot),
            on_destroy=lambda slot: self._loop.call(self.servers.unwatch(slot)),
            report=lambda msg: self.emitter.health("degraded", msg),
        )

    async def _resolve(self, name: str) -> tuple[str, ...]:
        return await self.resolver(name)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop.loop

    @property
    def proxy(self) -> ProxyServer:
        return self.servers.proxy

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
        """Claim an address block (reaping what dead owners left), start proxy and DNS on its gateway,
        warm ``pool_size`` namespaces."""
        if os.geteuid() != 0:
            raise EgressError("egress needs root (network namespaces, veth, nftables)")
        block = claim_block(base, proxy_port, dns_port)
        self = cls(policy, emit, host, block, pool_size)
        try:
            os.makedirs(self.state_dir, exist_ok=True)
            with open(self.resolv_conf, "w") as f:
                f.write(f"nameserver {block.gateway}\noptions attempts:1 timeout:2\n")
            self._loop.start()
            self._loop.call(self.servers.start())
            self.pool.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop serving and remove every namespace, veth and lock this egress made."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.pool.stop_worker()
        if self._loop.alive:
            with contextlib.suppress(Exception):
                self._loop.call(self.servers.shutdown(list(self.pool.live.values())))
            self._loop.stop()
        self.pool.destroy_all()
        release_block(self.block)

    def __enter__(self) -> Egress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refill(self) -> None:
        """Top the warm pool up to ``pool_size`` (call from a spare thread to keep attach fast)."""
        self.pool.refill()

    # -- attachments ------------------------------------------------------------------------------------
    def attach(self, sandbox_id: str) -> NetworkAttachment:
        """A ready network namespace for one sandbox (warm when the pool has one)."""
        if self._closed:
            raise EgressError("egress is closed")
        slot = self.pool.take()
        net = self.policy.network
        st = Attached(
            self.emitter,
            sandbox_id,
            slot,
            Account(net.connections_max, net.transfer_max_bytes),
            self.block.gateway,
        )
        try:
            self._loop.call(self.servers.register(st))
        except BaseException:
            self.pool.destroy(slot)
            raise
        return NetworkAttachment(self, st)

    def release(self, st: Attached) -> None:
        """Detach a sandbox: close its flows, then return its netns to the pool or destroy it."""
        with contextlib.suppress(EgressError):
            self._loop.call(self.servers.unregister(st))
        if not self._closed:
            self.pool.give_back(st.slot)

    # -- used by NetworkAttachment ----------------------------------------------------------------------
    def set_context(self, st: Attached, ctx: TraceContext | None) -> None:
        with contextlib.suppress(EgressError):
            self._loop.call(self.servers.drain_async(st.slot))  # log lines so far belong to the previous call
        st.ctx = ctx or TraceContext()

    def health(self, st: Attached) -> None:
        if self._closed:
            raise EgressError("egress is closed")
        problem = self._loop.call(self.servers.problem(), timeout=2.0)
        if problem is None:
            problem = _slot_problem(st.slot)
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


def _slot_problem(slot: Slot) -> str | None:
    """The sandbox side is intact: its netns pinned, its nftables chain in place."""
    if not os.path.exists(slot.netns_path):
        return f"sandbox netns {slot.netns_path} is gone"
    try:
        with in_netns(slot.ns_fd):
            run_nft(f"list chain inet {TABLE} output")
    except EgressError as exc:
        return f"the sandbox's nftables rules are missing ({exc})"
    return None

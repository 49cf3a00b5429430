"""The sockets on the loop thread: the proxy and DNS resolver on the block's gateway, and one NFLOG
reader per sandbox netns. Every method here runs on the loop thread (``LoopThread.call``/``soon``)."""

from __future__ import annotations

import asyncio
import socket

from corral.egress._dns import DnsProtocol, Resolver, answer
from corral.egress._emission import Attached
from corral.egress._netns import Block, Slot
from corral.egress._nflog import parse_messages
from corral.egress._proxy import ProxyServer, listening_socket
from corral.egress._rules import Rules


class Servers:
    def __init__(self, rules: Rules, block: Block, resolve: Resolver, dns_queries_max: int) -> None:
        self.rules = rules
        self.block = block
        self._resolve = resolve
        self._dns_max = dns_queries_max
        self.attached: dict[str, Attached] = {}  # by sandbox IP
        self.proxy = ProxyServer(rules, self.attached.get, self.resolve)
        self.dns_transport: asyncio.DatagramTransport | None = None

    async def resolve(self, name: str) -> tuple[str, ...]:
        return await self._resolve(name)

    async def start(self) -> None:
        await self.proxy.start(self.block.gateway, self.block.proxy_port)
        sock = listening_socket(socket.SOCK_DGRAM, self.block.gateway, self.block.dns_port)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: DnsProtocol(self._dns), sock=sock)
        self.dns_transport = transport

    async def shutdown(self, slots: list[Slot]) -> None:
        for st in list(self.attached.values()):
            for closer in list(st.closers):
                closer()
        loop = asyncio.get_running_loop()
        for slot in slots:
            loop.remove_reader(slot.nflog.fileno())
        if self.proxy.server is not None:
            self.proxy.server.close()
        if self.dns_transport is not None:
            self.dns_transport.close()
        await asyncio.sleep(0)

    # -- sandboxes ----------------------------------------------------------------------------------
    def watch(self, slot: Slot) -> None:
        asyncio.get_running_loop().add_reader(slot.nflog.fileno(), self._read_nflog, slot)

    async def unwatch(self, slot: Slot) -> None:
        asyncio.get_running_loop().remove_reader(slot.nflog.fileno())

    async def register(self, st: Attached) -> None:
        self.drain(st.slot)  # whatever an earlier user left in the log is not this sandbox's
        self.attached[st.slot.sandbox_ip] = st

    async def unregister(self, st: Attached) -> None:
        self.drain(st.slot)
        for closer in list(st.closers):
            closer()
        self.attached.pop(st.slot.sandbox_ip, None)

    async def drain_async(self, slot: Slot) -> None:
        self.drain(slot)

    def drain(self, slot: Slot) -> None:
        while True:
            try:
                data = slot.nflog.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self._packets(slot, data)

    def _read_nflog(self, slot: Slot) -> None:
        try:
            data = slot.nflog.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # ENOBUFS: the kernel dropped log messages; the next read carries on
        self._packets(slot, data)

    def _packets(self, slot: Slot, data: bytes) -> None:
        st = self.attached.get(slot.sandbox_ip)
        if st is not None:
            st.packets(parse_messages(data))

    async def _dns(self, data: bytes, source_ip: str) -> bytes | None:
        st = self.attached.get(source_ip)
        if st is None:
            return None
        st.dns_queries += 1
        reply, out = await answer(self.rules, data, source_ip, self.resolve, st.dns_queries > self._dns_max)
        if out is not None:
            st.dns(out)
        return reply

    # -- health -------------------------------------------------------------------------------------
    async def problem(self) -> str | None:
        if self.proxy.server is None or not self.proxy.server.is_serving():
            return "proxy is not serving"
        if self.dns_transport is None or self.dns_transport.is_closing():
            return "DNS resolver is not serving"
        return None

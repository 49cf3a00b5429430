"""The sandbox's DNS resolver: answers names the allowlist covers, NXDOMAIN for the rest.

It never forwards a query: for an allowed name it resolves the name itself (the
policy's static ``hosts`` map first, then the host's resolver), drops answers in
denied ranges, and builds the reply. The decision part is pure (``plan_query``);
``DnsProtocol`` is the thin UDP server.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

from corral.egress._rules import Rules, parse_ip


@dataclass(frozen=True)
class QueryPlan:
    """What to do with one question: refuse (rcode), answer statically, or resolve upstream."""

    name: str
    qtype: str
    decision: str  # "allowed" | "denied"
    rule: str
    rcode: int = RCODE.NOERROR
    static: tuple[str, ...] | None = None  # None: resolve upstream


def plan_query(rules: Rules, name: str, qtype: str) -> QueryPlan:
    n = name.lower().rstrip(".")
    verdict = rules.decide_dns(n)
    if not verdict.allowed:
        return QueryPlan(n, qtype, "denied", verdict.rule, RCODE.NXDOMAIN, ())
    if qtype not in ("A", "AAAA"):
        return QueryPlan(n, qtype, "allowed", verdict.rule, RCODE.NOERROR, ())
    static = rules.section.hosts.get(n)
    return QueryPlan(n, qtype, "allowed", verdict.rule, RCODE.NOERROR, static)


def filter_answers(
    rules: Rules, qtype: str, addresses: tuple[str, ...]
) -> tuple[tuple[str, ...], str | None]:
    """Keep answers of the asked family; refuse all if any lands in a denied range (rebinding)."""
    want = 4 if qtype == "A" else 6
    kept: list[str] = []
    for a in addresses:
        ip = parse_ip(a)
        if ip is None:
            continue
        bad = rules.check_resolved(ip, None)
        if bad is not None:
            return (), bad.rule
        if ip.version == want:
            kept.append(str(ip))
    return tuple(kept), None


Resolver = Callable[[str], Awaitable[tuple[str, ...]]]


async def system_resolve(name: str) -> tuple[str, ...]:
    """Resolve through the host's own resolver (the harness's netns, never the sandbox's)."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(i[4][0]) for i in infos))


@dataclass(frozen=True)
class DnsOutcome:
    source_ip: str
    name: str
    qtype: str
    decision: str
    rule: str
    answers: tuple[str, ...]


async def answer(
    rules: Rules, data: bytes, source_ip: str, resolve: Resolver, over_budget: bool
) -> tuple[bytes | None, DnsOutcome | None]:
    """Reply bytes for one query datagram, and what to record about it."""
    try:
        req = DNSRecord.parse(data)
    except Exception:
        return None, None
    if not req.questions:
        return None, None
    q = req.questions[0]
    name, qtype = str(q.qname), QTYPE.get(q.qtype, str(q.qtype))
    reply = req.reply()
    if over_budget:
        reply.header.rcode = RCODE.REFUSED
        out = DnsOutcome(source_ip, name.rstrip(".").lower(), qtype, "denied", "budget:dns-queries", ())
        return reply.pack(), out
    plan = plan_query(rules, name, qtype)
    answers: tuple[str, ...] = ()
    rule, decision, rcode = plan.rule, plan.decision, plan.rcode
    if decision == "allowed" and qtype in ("A", "AAAA"):
        try:
            raw = plan.static if plan.static is not None else await resolve(plan.name)
        except OSError:
            raw = ()
        answers, refused = filter_answers(rules, qtype, raw)
        if refused is not None:
            rule, decision, rcode = refused, "denied", RCODE.NXDOMAIN
        elif not raw:
            rcode = RCODE.NXDOMAIN
    reply.header.rcode = rcode
    for a in answers:
        rdata = A(a) if qtype == "A" else AAAA(a)
        reply.add_answer(RR(q.qname, q.qtype, rdata=rdata, ttl=30))
    return reply.pack(), DnsOutcome(source_ip, plan.name, qtype, decision, rule, answers)


class DnsProtocol(asyncio.DatagramProtocol):
    """UDP server: hands each datagram to ``handle`` (which knows the sandboxes) and sends the reply."""

    def __init__(self, handle: Callable[[bytes, str], Awaitable[bytes | None]]) -> None:
        self._handle = handle
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        t = asyncio.ensure_future(self._reply(data, addr))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _reply(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        out = await self._handle(data, str(addr[0]))
        if out is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)

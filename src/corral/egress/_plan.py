"""The network policy as flat sets that every export renders: one semantics, computed once.

``Rules`` decides one destination at a time (the proxy and the DNS resolver); the
exports need the same answer as sets of addresses and names per port. This module
computes them from the same rules (see ``_rules.py`` for the semantics):

- allowed networks per port: allow entries, merged, with every deny entry that
  applies on that port cut out of them, and the always-denied ranges cut out unless an
  allow entry names the exact address;
- denied networks (every port, and per port), merged, and the always-denied ranges
  minus the exact exceptions: for layers that accept addresses learnt at runtime (FQDN
  sets, Cilium's ``toFQDNs``), so a name resolving into them is still refused;
- allowed name patterns per port with denied ones removed, and the conflicts a
  name-only layer cannot express (a denied name strictly inside an allowed wildcard).

Everything here is pure; the property tests check that the exports rendered from it
and ``Rules`` agree on random destinations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from corral.egress._rules import (
    ALWAYS_DENIED,
    ALWAYS_DENIED_NAMES,
    DEFAULT_PORTS,
    IPAddress,
    IPNetwork,
    Rules,
    is_exact_address,
)
from corral.policy import NetworkSection
from corral.policy._network import NetworkEntry


def inside(a: IPNetwork, b: IPNetwork) -> bool:
    """``a`` is within ``b`` (False across address families)."""
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


def merge(nets: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    """Collapse overlapping and adjacent networks (IPv4 first, then IPv6), sorted."""
    items = list(nets)
    v4 = [n for n in items if n.version == 4]
    v6 = [n for n in items if n.version == 6]
    return (*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6))


def subtract(nets: Iterable[IPNetwork], holes: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    """``nets`` minus ``holes``, as merged CIDRs (a hole inside a net splits it)."""
    cur = list(merge(nets))
    for hole in merge(holes):
        out: list[IPNetwork] = []
        for n in cur:
            if n.version != hole.version or not n.overlaps(hole):
                out.append(n)
            elif inside(n, hole):
                continue
            else:
                out.extend(n.address_exclude(hole))  # type: ignore[arg-type]
        cur = out
    return merge(cur)


def _ports(e: NetworkEntry, default: tuple[int, ...]) -> tuple[int, ...]:
    return e.ports if e.ports is not None else default


def _net(e: NetworkEntry) -> IPNetwork:
    assert e.cidr is not None
    return ipaddress.ip_network(e.cidr)


SPECIAL: tuple[IPNetwork, ...] = merge(net for net, _ in ALWAYS_DENIED)


@dataclass(frozen=True)
class Block:
    """An allowed CIDR with the denied CIDRs strictly inside it (the ``except`` of k8s and Cilium)."""

    cidr: IPNetwork
    holes: tuple[IPNetwork, ...] = ()


def _blocks(nets: Iterable[IPNetwork], holes: Iterable[IPNetwork]) -> list[Block]:
    hs = merge(holes)
    out: list[Block] = []
    for n in merge(nets):
        holes_here = [h for h in hs if h.version == n.version and h.overlaps(n)]
        if any(inside(n, h) for h in holes_here):
            continue  # wholly denied
        out.append(Block(n, tuple(holes_here)))
    return out


@dataclass(frozen=True)
class AddressPlan:
    allow: dict[int, tuple[IPNetwork, ...]]  # port -> what may be dialled by address on that port
    blocks: dict[int, tuple[Block, ...]]  # the same sets as CIDRs with holes (k8s/Cilium: shorter)
    deny_all: tuple[IPNetwork, ...]  # deny entries without ports
    deny_ports: dict[int, tuple[IPNetwork, ...]]  # deny entries with ports (minus deny_all)
    special: tuple[IPNetwork, ...]  # always-denied ranges minus the exact exceptions
    special_blocks: tuple[Block, ...]  # the same as ranges with the exceptions as holes
    exceptions: tuple[IPAddress, ...]  # exact addresses that open an always-denied range (loudly)

    def denied_on(self, port: int) -> tuple[IPNetwork, ...]:
        return merge([*self.deny_all, *self.deny_ports.get(port, ())])

    def by_blocks(self) -> list[tuple[tuple[int, ...], tuple[Block, ...]]]:
        """Ports that share the same allowed blocks, grouped (fewer, shorter rules)."""
        groups: dict[tuple[Block, ...], list[int]] = {}
        for port in sorted(self.blocks):
            if self.blocks[port]:
                groups.setdefault(self.blocks[port], []).append(port)
        return [(tuple(ports), blocks) for blocks, ports in groups.items()]

    def deny_port_groups(self) -> list[tuple[tuple[int, ...], tuple[IPNetwork, ...]]]:
        groups: dict[tuple[IPNetwork, ...], list[int]] = {}
        for port in sorted(self.deny_ports):
            if self.deny_ports[port]:
                groups.setdefault(self.deny_ports[port], []).append(port)
        return [(tuple(ports), nets) for nets, ports in groups.items()]


def address_plan(net: NetworkSection, extra: Mapping[int, Iterable[IPNetwork]] | None = None) -> AddressPlan:
    """The IP side of the policy. ``extra``: exact addresses to allow per port that already passed
    ``Rules.check_resolved`` (names resolved at export time)."""
    allowlist = net.allow if net.mode == "allowlist" else ()
    deny_all = merge(_net(e) for e in net.deny if e.cidr and e.ports is None)
    deny_ports: dict[int, list[IPNetwork]] = {}
    for e in net.deny:
        if e.cidr and e.ports is not None:
            for p in e.ports:
                deny_ports.setdefault(p, []).append(_net(e))
    exact: dict[int, list[IPNetwork]] = {}
    wide: dict[int, list[IPNetwork]] = {}
    for e in allowlist:
        if e.cidr:
            n = _net(e)
            for p in _ports(e, DEFAULT_PORTS):
                (exact if is_exact_address(n) else wide).setdefault(p, []).append(n)
    for p, nets in (extra or {}).items():
        exact.setdefault(p, []).extend(nets)
    exceptions = tuple(
        sorted(
            {
                n.network_address
                for nets in exact.values()
                for n in nets
                if any(inside(n, s) for s in SPECIAL)
            },
            key=lambda a: (a.version, int(a)),
        )
    )
    allow: dict[int, tuple[IPNetwork, ...]] = {}
    blocks: dict[int, tuple[Block, ...]] = {}
    for p in sorted({*exact, *wide}):
        denied = [*deny_all, *deny_ports.get(p, ())]
        kept = [*subtract(wide.get(p, ()), [*denied, *SPECIAL]), *subtract(exact.get(p, ()), denied)]
        if merged := merge(kept):
            allow[p] = merged
            wide_blocks = _blocks(wide.get(p, ()), [*denied, *SPECIAL])
            covered = [b.cidr for b in wide_blocks]
            # exact addresses already inside an allowed wide block (and not in one of its holes) add nothing
            exact_left = [
                n for n in subtract(exact.get(p, ()), denied)
                if not any(inside(n, c) for c in covered)
                or any(inside(n, h) for b in wide_blocks for h in b.holes)
            ]  # fmt: skip
            blocks[p] = (*wide_blocks, *_blocks(exact_left, denied))
    special = subtract(SPECIAL, [ipaddress.ip_network(a) for a in exceptions])
    return AddressPlan(
        allow=allow,
        blocks=blocks,
        deny_all=deny_all,
        deny_ports={p: subtract(v, deny_all) for p, v in sorted(deny_ports.items())},
        special=special,
        special_blocks=tuple(_blocks(SPECIAL, [ipaddress.ip_network(a) for a in exceptions])),
        exceptions=exceptions,
    )


# -- names ---------------------------------------------------------------------------------------------
def _covers(outer: str, inner: str) -> bool:
    """Does pattern ``outer`` match every name pattern ``inner`` matches?"""
    if outer == inner:
        return True
    if not outer.startswith("*."):
        return False
    suffix = outer[1:]  # ".example.org"
    base = inner[2:] if inner.startswith("*.") else inner
    return base.endswith(suffix) and len(base) > len(suffix) - 1


def _overlaps(a: str, b: str) -> bool:
    return _covers(a, b) or _covers(b, a)


@dataclass(frozen=True)
class NamePlan:
    allow: dict[int, tuple[str, ...]]  # port -> allowed patterns (``*.x`` = any depth), denied ones removed
    conflicts: tuple[str, ...]  # "deny D inside allow A on port P": not expressible by name-only layers

    def patterns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for ps in self.allow.values() for p in ps))

    def by_names(self) -> list[tuple[tuple[int, ...], tuple[str, ...]]]:
        groups: dict[tuple[str, ...], list[int]] = {}
        for port in sorted(self.allow):
            if self.allow[port]:
                groups.setdefault(self.allow[port], []).append(port)
        return [(tuple(ports), names) for names, ports in groups.items()]


def name_plan(net: NetworkSection) -> NamePlan:
    allowlist = net.allow if net.mode == "allowlist" else ()
    always = [(n, None) for n in ALWAYS_DENIED_NAMES] + [("*.localhost", None)]
    denies: list[tuple[str, tuple[int, ...] | None]] = [
        *((e.domain, e.ports) for e in net.deny if e.domain),
        *always,
    ]
    allow: dict[int, list[str]] = {}
    conflicts: list[str] = []
    for e in allowlist:
        if not e.domain:
            continue
        for p in _ports(e, DEFAULT_PORTS):
            on_port = [d for d, ports in denies if ports is None or p in ports]
            if any(_covers(d, e.domain) for d in on_port):
                continue  # the deny equals or covers the allow: drop it
            inside = [d for d in on_port if _overlaps(d, e.domain)]
            if inside:
                conflicts += [f"deny {d} inside allow {e.domain} on port {p}" for d in inside]
            if e.domain not in allow.setdefault(p, []):
                allow[p].append(e.domain)
    return NamePlan(
        allow={p: tuple(v) for p, v in sorted(allow.items())}, conflicts=tuple(dict.fromkeys(conflicts))
    )


def rules_for(net: NetworkSection) -> Rules:
    """The decision object the proxy would use for ``net`` (no host addresses: exports do not know them)."""
    return Rules(net)

"""Property tests: for random policies and random destinations, the proxy (``Rules``), the nftables
table (as nft itself stores it), the NetworkPolicy and the CiliumNetworkPolicy give the same answer.

Policies mix overlapping allows and denies, port-specific denies, exact addresses inside the
always-denied ranges and wide CIDRs over them, in IPv4 and IPv6; names mix exact and wildcard
entries at several depths. A fixed example budget keeps the run inside CI's time.
"""

from __future__ import annotations

import ipaddress

import yaml
from export_support import (
    cilium_allows_ip,
    cilium_allows_name,
    networkpolicy_allows,
    nft_check,
    nft_forward_allows,
    nft_sets,
    validate_cilium,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.egress._export import render
from corral.egress._plan import name_plan
from corral.egress._rules import Rules, parse_ip
from corral.policy import Policy

# Address universes: public-looking, private, metadata/link-local, reserved and documentation.
V4 = ["93.184.0.0/16", "10.20.0.0/16", "169.254.0.0/16", "198.18.0.0/16", "151.101.0.0/16"]
V6 = ["2606:4700::/48", "2001:db8::/48", "fd00:ec2::/48"]
PORTS = [22, 80, 443, 8080]
NAMES = ["a.example.org", "b.a.example.org", "x.b.a.example.org", "example.org", "c.example.net"]
PATTERNS = ["a.example.org", "*.example.org", "*.a.example.org", "b.a.example.org", "c.example.net"]

SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def _net(draw: st.DrawFn) -> str:
    base = ipaddress.ip_network(draw(st.sampled_from(V4 + V6)))
    lo = base.prefixlen
    hi = 32 if base.version == 4 else 128
    prefix = draw(st.sampled_from(sorted({lo, lo + 2, lo + 8, hi - 8, hi - 4, hi})))
    offset = draw(st.integers(0, base.num_addresses - 1))
    return str(ipaddress.ip_network((int(base.network_address) + offset, prefix), strict=False))


@st.composite
def _addr(draw: st.DrawFn) -> str:
    base = ipaddress.ip_network(draw(st.sampled_from(V4 + V6)))
    return str(base.network_address + draw(st.integers(0, min(base.num_addresses - 1, 1 << 20))))


_ports = st.one_of(st.none(), st.lists(st.sampled_from(PORTS), min_size=1, max_size=3, unique=True))


def _entry(target: str, key: str, ports: list[int] | None) -> dict[str, object]:
    return {key: target, **({"ports": ports} if ports else {})}


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    allow = [_entry(draw(_net()), "cidr", draw(_ports)) for _ in range(draw(st.integers(0, 5)))]
    allow += [
        _entry(draw(st.sampled_from(PATTERNS)), "domain", draw(_ports))
        for _ in range(draw(st.integers(0, 3)))
    ]
    deny = [_entry(draw(_net()), "cidr", draw(_ports)) for _ in range(draw(st.integers(0, 4)))]
    deny += [
        _entry(draw(st.sampled_from(PATTERNS)), "domain", draw(_ports))
        for _ in range(draw(st.integers(0, 2)))
    ]
    doc = {"network": {"mode": "allowlist", "allow": allow, "deny": deny}}
    return Policy.from_yaml(yaml.safe_dump(doc))


def _edges(pol: Policy) -> list[tuple[str, int]]:
    """Destinations where meanings could part: first, middle and last address of every entry."""
    out: list[tuple[str, int]] = []
    for e in (*pol.network.allow, *pol.network.deny):
        if e.cidr:
            n = ipaddress.ip_network(e.cidr)
            for a in (n.network_address, n.network_address + n.num_addresses // 2, n.broadcast_address):
                out += [(str(a), p) for p in (e.ports or (443, 80))]
    return out


@SETTINGS
@given(pol=policies(), dests=st.lists(st.tuples(_addr(), st.sampled_from(PORTS)), min_size=10, max_size=25))
def test_exports_and_proxy_agree_on_addresses(pol: Policy, dests: list[tuple[str, int]]) -> None:
    rules = Rules(pol.network)
    nft = render(pol, "nftables")
    nft_check(nft)
    sets = nft_sets(nft)
    np = yaml.safe_load(render(pol, "k8s-networkpolicy"))
    conflicts = name_plan(pol.network).conflicts
    cil = None if conflicts else yaml.safe_load(render(pol, "cilium"))
    if cil is not None:
        validate_cilium(cil)
    for ip, port in [*dests, *_edges(pol)]:
        addr = parse_ip(ip)
        assert addr is not None
        proxy = rules.decide_ip(addr, port).allowed
        got = [nft_forward_allows(sets, ip, port), networkpolicy_allows(np, ip, port)]
        if cil is not None:
            got.append(cilium_allows_ip(cil, ip, port))
        assert got == [proxy] * len(got), (ip, port, rules.decide_ip(addr, port), got)


@SETTINGS
@given(pol=policies(), dests=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(PORTS)), min_size=5))
def test_cilium_and_proxy_agree_on_names(pol: Policy, dests: list[tuple[str, int]]) -> None:
    rules = Rules(pol.network)
    if name_plan(pol.network).conflicts:
        return  # refused by the Cilium export (tested in test_egress_firewall_cli)
    cil = yaml.safe_load(render(pol, "cilium"))
    validate_cilium(cil)
    for name, port in dests:
        assert cilium_allows_name(cil, name, port) == rules.decide_name(name, port).allowed, (name, port)

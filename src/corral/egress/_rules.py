"""The allow/deny decision: pure functions of the policy, a name or address, and a port.

One semantics, shared by the proxy, the DNS resolver and every export (``_plan.py``):

1. A deny entry wins over any allow entry it equals, covers or overlaps (on the ports it names;
   a deny without ports covers every port).
2. Names and ranges that are always refused (metadata, loopback, link-local, private, the
   host's own addresses ...) stay refused unless an allow entry names that exact address
   (a /32 or /128): covering it with a wider CIDR is not enough. Such an exception is
   reported loudly (``Rules.exceptions``, the ``allow-exception:`` rule, export warnings).
3. Then allow entries; anything else is refused.

``*.example.org`` covers every strict subdomain at any depth (``a.example.org``,
``a.b.example.org``), never ``example.org`` itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from corral.policy import NetworkSection
from corral.policy._network import NetworkEntry

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = (443,)

# (range, name) refused unless an allow entry covers the address by IP. Metadata first: most specific.
ALWAYS_DENIED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(c), n)
    for c, n in (
        ("169.254.169.254/32", "metadata"),
        ("100.100.100.200/32", "metadata"),
        ("fd00:ec2::254/128", "metadata"),
        ("127.0.0.0/8", "loopback"),
        ("::1/128", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("fe80::/10", "link-local"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("fc00::/7", "private"),
        ("100.64.0.0/10", "shared"),
        ("198.18.0.0/15", "reserved"),
        ("0.0.0.0/8", "reserved"),
        ("::/128", "reserved"),
        ("192.0.0.0/24", "reserved"),
        ("240.0.0.0/4", "reserved"),
        ("224.0.0.0/4", "multicast"),
        ("ff00::/8", "multicast"),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("2001:db8::/32", "documentation"),
    )
)

# Names refused whatever the allowlist says: cloud metadata services and the host itself.
ALWAYS_DENIED_NAMES = (
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "localhost",
)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: str

    @property
    def decision(self) -> str:
        return "allowed" if self.allowed else "denied"


def _canonical_ip(ip: IPAddress) -> IPAddress:
    """Unwrap IPv4-mapped and NAT64 IPv6 forms so they meet the IPv4 rules."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def parse_ip(text: str) -> IPAddress | None:
    try:
        return _canonical_ip(ipaddress.ip_address(text.strip("[]").split("%")[0]))
    except ValueError:
        return None


def normalize_name(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _domain_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and len(name) > len(pattern) - 1
    return name == pattern


def domain_matches(pattern: str, name: str) -> bool:
    """Does ``pattern`` (exact, or ``*.suffix``: strict subdomains at any depth) cover ``name``?"""
    return _domain_matches(pattern, normalize_name(name))


def is_exact_address(net: IPNetwork) -> bool:
    return net.prefixlen == net.max_prefixlen


def _ports_match(entry: NetworkEntry, port: int, default: tuple[int, ...] | None) -> bool:
    ports = entry.ports if entry.ports is not None else default
    return ports is None or port in ports


class Rules:
    """The compiled network policy plus the host's own addresses."""

    def __init__(self, section: NetworkSection, host_addresses: Iterable[str] = ()) -> None:
        self.section = section
        self._host = {a for a in (parse_ip(x) for x in host_addresses) if a is not None}
        self._allow_ip = [(e, ipaddress.ip_network(e.cidr)) for e in section.allow if e.cidr]
        self._deny_ip = [(e, ipaddress.ip_network(e.cidr)) for e in section.deny if e.cidr]
        self._allow_dn = [e for e in section.allow if e.domain]
        self._deny_dn = [e for e in section.deny if e.domain]
        # Exact addresses an allow entry names: the only way to open an always-denied range.
        self.exceptions = frozenset(
            _canonical_ip(net.network_address) for _, net in self._allow_ip if is_exact_address(net)
        )

    def with_host_addresses(self, addresses: Iterable[str]) -> Rules:
        return Rules(self.section, [*map(str, self._host), *addresses])

    # -- names --------------------------------------------------------------------------------------
    def name_denied(self, name: str, port: int | None) -> Verdict | None:
        """A deny or always-denied verdict for ``name``, or None when nothing refuses it outright."""
        n = normalize_name(name)
        for e in self._deny_dn:
            assert e.domain is not None
            if _domain_matches(e.domain, n) and (port is None or _ports_match(e, port, None)):
                return Verdict(False, f"deny:{e.label()}")
        if n in ALWAYS_DENIED_NAMES or n.endswith(".localhost"):
            return Verdict(False, f"always-denied:name:{n}")
        return None

    def name_allowed_entry(self, name: str, port: int | None) -> NetworkEntry | None:
        n = normalize_name(name)
        for e in self._allow_dn:
            assert e.domain is not None
            if _domain_matches(e.domain, n) and (port is None or _ports_match(e, port, DEFAULT_PORTS)):
                return e
        return None

    def decide_name(self, name: str, port: int) -> Verdict:
        """Decision on a requested destination before resolution (name or IP literal)."""
        ip = parse_ip(name)
        if ip is not None:
            return self.decide_ip(ip, port)
        refused = self.name_denied(name, port)
        if refused is not None:
            return refused
        e = self.name_allowed_entry(name, port)
        if e is not None:
            return Verdict(True, f"allow:{e.label()}")
        return Verdict(False, "default-deny")

    def decide_dns(self, name: str) -> Verdict:
        """May the resolver answer for ``name``? Only names some allow entry covers (any port)."""
        refused = self.name_denied(name, None)
        if refused is not None:
            return refused
        e = self.name_allowed_entry(name, None)
        return Verdict(True, f"allow:{e.label()}") if e is not None else Verdict(False, "default-deny")

    # -- addresses ----------------------------------------------------------------------------------
    def _ip_listed(self, ip: IPAddress, port: int | None, exact_only: bool = False) -> NetworkEntry | None:
        for e, net in self._allow_ip:
            if (
                (not exact_only or is_exact_address(net))
                and ip.version == net.version
                and ip in net
                and (port is None or _ports_match(e, port, DEFAULT_PORTS))
            ):
                return e
        return None

    def address_refused(self, ip: IPAddress, port: int | None) -> Verdict | None:
        """Deny entries and always-denied ranges; None when the address itself is not refused."""
        ip = _canonical_ip(ip)
        for e, net in self._deny_ip:
            if ip.version == net.version and ip in net and (port is None or _ports_match(e, port, None)):
                return Verdict(False, f"deny:{e.label()}")
        if ip in self.exceptions:
            return None
        return self.special_range(ip)

    def special_range(self, ip: IPAddress) -> Verdict | None:
        """The always-denied range (or host address) ``ip`` falls in, ignoring exceptions."""
        ip = _canonical_ip(ip)
        if ip in self._host:
            return Verdict(False, "always-denied:host-address")
        for net, why in ALWAYS_DENIED:
            if ip.version == net.version and ip in net:
                return Verdict(False, f"always-denied:{why}:{net}")
        return None

    def decide_ip(self, ip: IPAddress, port: int) -> Verdict:
        """Decision on a destination given as an address (no name)."""
        ip = _canonical_ip(ip)
        refused = self.address_refused(ip, port)
        if refused is not None:
            return refused
        special = self.special_range(ip) is not None
        e = self._ip_listed(ip, port, exact_only=special)  # a wider CIDR never opens a special range
        if e is None:
            return Verdict(False, "default-deny")
        if special:
            return Verdict(True, f"allow-exception:{e.label()}")
        return Verdict(True, f"allow:{e.label()}")

    def check_resolved(self, ip: IPAddress, port: int | None) -> Verdict | None:
        """After an allowed name resolved: refuse rebinding into denied ranges. None: fine to dial."""
        ip = _canonical_ip(ip)
        refused = self.address_refused(ip, port)
        if refused is not None:
            return Verdict(False, f"rebinding:{refused.rule}")
        return None

"""The node-level nftables table: traffic from sandbox addresses reaches only the proxy and DNS on the
node, or (when a node forwards it) the policy's addresses; everything else is logged and dropped.

Sets hold merged, non-overlapping intervals (nftables refuses overlapping elements), computed by
``_plan``: allowed networks per port already have every deny and always-denied range cut out, so
accept-before-drop is safe; the deny sets come before the runtime ``fqdn`` sets, which a resolver may
fill with addresses of allowed names.
"""

from __future__ import annotations

import ipaddress

from corral.egress._plan import AddressPlan, NamePlan, merge
from corral.egress._rules import IPNetwork

NODE_TABLE = "corral_node"


def _elements(items: list[str]) -> str:
    return f" elements = {{ {', '.join(items)} }};" if items else ""


def _split(nets: tuple[IPNetwork, ...]) -> tuple[list[str], list[str]]:
    return [str(n) for n in nets if n.version == 4], [str(n) for n in nets if n.version == 6]


def _by_port(table: dict[int, tuple[IPNetwork, ...]], version: int) -> list[str]:
    return [f"{n} . {p}" for p, nets in sorted(table.items()) for n in nets if n.version == version]


def render_table(
    mode: str,
    plan: AddressPlan,
    names: NamePlan,
    sources: tuple[str, ...],
    proxy_port: int,
    dns_port: int,
    log_group: int,
    header: list[str],
) -> str:
    src4, src6 = _split(merge(ipaddress.ip_network(s, strict=False) for s in sources))
    allow = plan.allow if mode == "allowlist" else {}
    deny4, deny6 = _split(merge([*plan.deny_all, *plan.special]))
    log = f'log prefix "corral-node-deny " group {log_group}'
    patterns = ", ".join(names.patterns()) or "none"
    lines = [
        *(f"# {h}" for h in header),
        f"# names allowed through the proxy (nftables cannot match names; a resolver may fill fqdn_v4/"
        f"fqdn_v6): {patterns}",
        f"table inet {NODE_TABLE} {{",
        f"  set sources_v4 {{ type ipv4_addr; flags interval;{_elements(src4)} }}",
        f"  set sources_v6 {{ type ipv6_addr; flags interval;{_elements(src6)} }}",
        f"  set allow_v4 {{ type ipv4_addr . inet_service; flags interval;{_elements(_by_port(allow, 4))} }}",
        f"  set allow_v6 {{ type ipv6_addr . inet_service; flags interval;{_elements(_by_port(allow, 6))} }}",
        f"  set deny_v4 {{ type ipv4_addr; flags interval;{_elements(deny4)} }}",
        f"  set deny_v6 {{ type ipv6_addr; flags interval;{_elements(deny6)} }}",
        "  set deny_port_v4 { type ipv4_addr . inet_service; flags interval;"
        f"{_elements(_by_port(plan.deny_ports, 4))} }}",
        "  set deny_port_v6 { type ipv6_addr . inet_service; flags interval;"
        f"{_elements(_by_port(plan.deny_ports, 6))} }}",
        "  set fqdn_v4 { type ipv4_addr . inet_service; flags timeout; }",
        "  set fqdn_v6 { type ipv6_addr . inet_service; flags timeout; }",
        "  chain input {",
        "    type filter hook input priority 0; policy accept;",
        "    ip saddr @sources_v4 jump from_sandbox",
        "    ip6 saddr @sources_v6 jump from_sandbox",
        "  }",
        "  chain from_sandbox {",
        "    ct state established,related accept",
        f"    tcp dport {proxy_port} accept",
        f"    udp dport {dns_port} accept",
        f"    {log}",
        "    drop",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
        "    ip saddr @sources_v4 jump sandbox_forward",
        "    ip6 saddr @sources_v6 jump sandbox_forward",
        "  }",
        "  chain sandbox_forward {",
        "    ct state established,related accept",
        "    ip daddr . tcp dport @allow_v4 accept",
        "    ip6 daddr . tcp dport @allow_v6 accept",
        f"    ip daddr @deny_v4 {log} drop",
        f"    ip6 daddr @deny_v6 {log} drop",
        f"    ip daddr . tcp dport @deny_port_v4 {log} drop",
        f"    ip6 daddr . tcp dport @deny_port_v6 {log} drop",
        "    ip daddr . tcp dport @fqdn_v4 accept",
        "    ip6 daddr . tcp dport @fqdn_v6 accept",
        f"    {log}",
        "    drop",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"

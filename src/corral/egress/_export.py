"""The same network policy rendered for other layers: a node nftables ruleset, Kubernetes
NetworkPolicy and CiliumNetworkPolicy. Blocking a reverse tunnel at more than one layer means
a gap in one (a broken sandbox rule, a pod run without Corral) is not a way out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import yaml

from corral.egress._netns import DEFAULT_BASE
from corral.egress._rules import ALWAYS_DENIED, DEFAULT_PORTS
from corral.policy import NetworkSection
from corral.policy._network import NetworkEntry

NODE_TABLE = "corral_node"
FORMATS = ("nftables", "k8s-networkpolicy", "cilium")
METADATA = tuple(str(net) for net, why in ALWAYS_DENIED if why == "metadata")


@dataclass(frozen=True)
class ExportOptions:
    sources: tuple[str, ...] = (DEFAULT_BASE,)  # sandbox addresses on the node (the egress base)
    proxy_port: int = 3128
    dns_port: int = 53
    log_group: int = 7
    name: str = "corral-egress"
    namespace: str | None = None
    selector: tuple[tuple[str, str], ...] = (("corral.dev/sandbox", "true"),)


def _ports(e: NetworkEntry) -> tuple[int, ...]:
    return e.ports if e.ports is not None else DEFAULT_PORTS


def _cidrs(entries: tuple[NetworkEntry, ...], version: int) -> list[NetworkEntry]:
    return [e for e in entries if e.cidr and ipaddress.ip_network(e.cidr).version == version]


def _elements(items: list[str]) -> str:
    return f" elements = {{ {', '.join(items)} }};" if items else ""


def render_nftables(net: NetworkSection, opt: ExportOptions = ExportOptions()) -> str:
    """A node-level table: traffic from sandbox addresses may reach only the proxy/DNS, or the IP allowlist
    when forwarded; deny entries first; everything else is logged (NFLOG) and dropped. Names cannot be
    matched in nftables: the ``fqdn_v4``/``fqdn_v6`` sets are for a resolver to fill at runtime."""
    src4 = [s for s in opt.sources if ipaddress.ip_network(s).version == 4]
    src6 = [s for s in opt.sources if ipaddress.ip_network(s).version == 6]
    allowlist = net.allow if net.mode == "allowlist" else ()
    allow4 = [f"{e.cidr} . {p}" for e in _cidrs(allowlist, 4) for p in _ports(e)]
    allow6 = [f"{e.cidr} . {p}" for e in _cidrs(allowlist, 6) for p in _ports(e)]
    deny4 = [e.cidr or "" for e in _cidrs(net.deny, 4)]
    deny6 = [e.cidr or "" for e in _cidrs(net.deny, 6)]
    names = ", ".join(e.label() for e in allowlist if e.domain) or "none"
    log = f'log prefix "corral-node-deny " group {opt.log_group}'
    lines = [
        f"# corral node firewall for policy network.mode={net.mode}; names allowed via the proxy: {names}",
        f"table inet {NODE_TABLE} {{",
        f"  set sources_v4 {{ type ipv4_addr; flags interval;{_elements(src4)} }}",
        f"  set sources_v6 {{ type ipv6_addr; flags interval;{_elements(src6)} }}",
        f"  set allow_v4 {{ type ipv4_addr . inet_service; flags interval;{_elements(allow4)} }}",
        f"  set allow_v6 {{ type ipv6_addr . inet_service; flags interval;{_elements(allow6)} }}",
        f"  set deny_v4 {{ type ipv4_addr; flags interval;{_elements(deny4)} }}",
        f"  set deny_v6 {{ type ipv6_addr; flags interval;{_elements(deny6)} }}",
        "  set fqdn_v4 { type ipv4_addr . inet_service; flags timeout; }",
        "  set fqdn_v6 { type ipv6_addr . inet_service; flags timeout; }",
        "  chain input {",
        "    type filter hook input priority 0; policy accept;",
        "    ip saddr @sources_v4 jump from_sandbox",
        "    ip6 saddr @sources_v6 jump from_sandbox",
        "  }",
        "  chain from_sandbox {",
        "    ct state established,related accept",
        f"    tcp dport {opt.proxy_port} accept",
        f"    udp dport {opt.dns_port} accept",
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
        f"    ip daddr @deny_v4 {log} drop",
        f"    ip6 daddr @deny_v6 {log} drop",
        "    ip daddr . tcp dport @allow_v4 accept",
        "    ip6 daddr . tcp dport @allow_v6 accept",
        "    ip daddr . tcp dport @fqdn_v4 accept",
        "    ip6 daddr . tcp dport @fqdn_v6 accept",
        f"    {log}",
        "    drop",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def apply_script(net: NetworkSection, opt: ExportOptions = ExportOptions()) -> str:
    """Replace Corral's node table atomically (create-if-missing, delete, add) and touch nothing else."""
    return f"add table inet {NODE_TABLE}\ndelete table inet {NODE_TABLE}\n" + render_nftables(net, opt)


def _selector(opt: ExportOptions) -> dict[str, Any]:
    return {"matchLabels": dict(opt.selector)}


def _metadata(opt: ExportOptions, annotations: dict[str, str]) -> dict[str, Any]:
    md: dict[str, Any] = {"name": opt.name, "labels": {"app.kubernetes.io/managed-by": "corral"}}
    if opt.namespace:
        md["namespace"] = opt.namespace
    if annotations:
        md["annotations"] = annotations
    return md


def _within(inner: str, outer: str) -> bool:
    a, b = ipaddress.ip_network(inner), ipaddress.ip_network(outer)
    return (
        a.version == b.version
        and int(a.network_address) & int(b.netmask) == int(b.network_address)
        and (a.prefixlen >= b.prefixlen)
    )


def _except(cidr: str, deny: tuple[NetworkEntry, ...]) -> list[str]:
    """Deny entries strictly inside an allowed block become its ``except`` list."""
    return [e.cidr for e in deny if e.cidr and e.cidr != cidr and _within(e.cidr, cidr)]


def render_networkpolicy(net: NetworkSection, opt: ExportOptions = ExportOptions()) -> str:
    """Kubernetes NetworkPolicy: DNS to kube-dns and the IP allowlist; names are not expressible here."""
    allowlist = net.allow if net.mode == "allowlist" else ()
    egress: list[dict[str, Any]] = []
    if allowlist:
        egress.append(
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }
        )
    for e in allowlist:
        if e.cidr:
            block: dict[str, Any] = {"cidr": e.cidr}
            if exc := _except(e.cidr, net.deny):
                block["except"] = exc
            egress.append(
                {"to": [{"ipBlock": block}], "ports": [{"protocol": "TCP", "port": p} for p in _ports(e)]}
            )
    names = [e.label() for e in allowlist if e.domain]
    notes = {"corral.dev/fqdn-allow-via-proxy": ", ".join(names)} if names else {}
    doc = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(opt, notes),
        "spec": {"podSelector": _selector(opt), "policyTypes": ["Egress"], "egress": egress},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _fqdn(domain: str) -> dict[str, str]:
    return {"matchPattern": domain} if domain.startswith("*.") else {"matchName": domain}


def render_cilium(net: NetworkSection, opt: ExportOptions = ExportOptions()) -> str:
    """CiliumNetworkPolicy: names via toFQDNs (DNS visibility on kube-dns), IPs via toCIDRSet, denies
    and cloud metadata endpoints via egressDeny."""
    allowlist = net.allow if net.mode == "allowlist" else ()
    domains = [e for e in allowlist if e.domain]
    egress: list[dict[str, Any]] = []
    if allowlist:
        dns_rules = [_fqdn(d.domain) for d in domains if d.domain]
        egress.append(
            {
                "toEndpoints": [
                    {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s-app": "kube-dns"}}
                ],
                "toPorts": [
                    {
                        "ports": [{"port": "53", "protocol": "ANY"}],
                        **({"rules": {"dns": dns_rules}} if dns_rules else {}),
                    }
                ],
            }
        )
    by_ports: dict[tuple[int, ...], list[dict[str, str]]] = {}
    for d in domains:
        if d.domain:
            by_ports.setdefault(_ports(d), []).append(_fqdn(d.domain))
    for ports, fqdns in by_ports.items():
        egress.append(
            {"toFQDNs": fqdns, "toPorts": [{"ports": [{"port": str(p), "protocol": "TCP"} for p in ports]}]}
        )
    for e in allowlist:
        if e.cidr:
            cs: dict[str, Any] = {"cidr": e.cidr}
            if exc := _except(e.cidr, net.deny):
                cs["except"] = exc
            egress.append(
                {
                    "toCIDRSet": [cs],
                    "toPorts": [{"ports": [{"port": str(p), "protocol": "TCP"} for p in _ports(e)]}],
                }
            )
    listed = [e.cidr for e in allowlist if e.cidr]
    metadata = [m for m in METADATA if not any(_within(m, n) for n in listed)]
    deny = [e.cidr for e in net.deny if e.cidr] + metadata
    spec: dict[str, Any] = {"endpointSelector": _selector(opt), "egress": egress}
    if deny:
        spec["egressDeny"] = [{"toCIDRSet": [{"cidr": c} for c in deny]}]
    dn_deny = [e.label() for e in net.deny if e.domain]
    notes = {"corral.dev/deny-names-enforced-by-proxy": ", ".join(dn_deny)} if dn_deny else {}
    doc = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": _metadata(opt, notes),
        "spec": spec,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def render(net: NetworkSection, fmt: str, opt: ExportOptions = ExportOptions()) -> str:
    if fmt == "nftables":
        return render_nftables(net, opt)
    if fmt == "k8s-networkpolicy":
        return render_networkpolicy(net, opt)
    if fmt == "cilium":
        return render_cilium(net, opt)
    from corral.errors import RegistryError

    raise RegistryError(f"unknown firewall format {fmt!r}; known: {', '.join(FORMATS)}")

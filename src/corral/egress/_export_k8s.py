"""Kubernetes NetworkPolicy and CiliumNetworkPolicy documents from the flat plan (``_plan``).

NetworkPolicy has no names and no denies: it gets DNS, the allowed networks per port (already
split around every deny and always-denied range) and, only when asked at export time, the
addresses the allowed names resolve to (they go stale). Cilium gets names through ``toFQDNs``
(Corral's ``*.x``, any depth, is Cilium's ``**.x`` from 1.19 on; older versions cannot say it, so
the export refuses), networks through ``toCIDRSet`` and denies, including the always-denied ranges
a resolved name could land in, through ``egressDeny``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corral.egress._plan import AddressPlan, Block, NamePlan
from corral.egress._rules import IPNetwork
from corral.errors import EgressError

CILIUM_MULTILEVEL = (1, 19)  # first Cilium release where a "**." prefix matches every depth

_KUBE_DNS_NP = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
_KUBE_DNS_CILIUM = {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s-app": "kube-dns"}}


@dataclass(frozen=True)
class SinkTarget:
    """Where the node agent sends alerts: it must be allowed out too, or alerts never leave."""

    kind: str  # webhook | syslog
    host: str
    port: int
    protocol: str  # TCP | UDP
    ip: bool  # host is an address literal


def cilium_pattern(domain: str, version: tuple[int, int]) -> dict[str, str]:
    if not domain.startswith("*."):
        return {"matchName": domain}
    if version < CILIUM_MULTILEVEL:
        raise EgressError(
            f"{domain!r}: Corral's '*.' covers subdomains at any depth, Cilium "
            f"{version[0]}.{version[1]} matches one label only ('**.' needs Cilium "
            f"{CILIUM_MULTILEVEL[0]}.{CILIUM_MULTILEVEL[1]}+); list the names exactly or target a newer "
            "Cilium"
        )
    return {"matchPattern": "*" + domain}


def _metadata(name: str, namespace: str | None, notes: dict[str, str]) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "corral"}}
    if namespace:
        md["namespace"] = namespace
    if notes:
        md["annotations"] = notes
    return md


def _cidrs(nets: tuple[IPNetwork, ...]) -> list[str]:
    return [str(n) for n in nets]


def _block(b: Block) -> dict[str, Any]:
    out: dict[str, Any] = {"cidr": str(b.cidr)}
    if b.holes:
        out["except"] = [str(h) for h in b.holes]
    return out


def networkpolicy(
    mode: str,
    plan: AddressPlan,
    names: NamePlan,
    sinks: list[SinkTarget],
    *,
    name: str,
    namespace: str | None,
    selector: dict[str, str],
    resolved: bool,
    notes: dict[str, str],
) -> dict[str, Any]:
    egress: list[dict[str, Any]] = []
    needs_dns = mode == "allowlist" or any(not s.ip for s in sinks)
    if needs_dns:
        egress.append(
            {
                "to": [dict(_KUBE_DNS_NP)],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }
        )
    if mode == "allowlist":
        for ports, blocks in plan.by_blocks():
            egress.append(
                {
                    "to": [{"ipBlock": _block(b)} for b in blocks],
                    "ports": [{"protocol": "TCP", "port": p} for p in ports],
                }
            )
    for s in sinks:
        if s.ip:
            egress.append(
                {
                    "to": [{"ipBlock": {"cidr": f"{s.host}/{128 if ':' in s.host else 32}"}}],
                    "ports": [{"protocol": s.protocol, "port": s.port}],
                }
            )
    if names.patterns():
        notes = {
            **notes,
            "corral.dev/names-not-expressible": ", ".join(names.patterns()),
            "corral.dev/names-resolved-at-export": "true (addresses go stale)" if resolved else "false",
        }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(name, namespace, notes),
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Egress"], "egress": egress},
    }


def _ports(ports: tuple[int, ...] | list[int], protocol: str = "TCP") -> list[dict[str, Any]]:
    return [{"ports": [{"port": str(p), "protocol": protocol} for p in ports]}]


def cilium(
    mode: str,
    plan: AddressPlan,
    names: NamePlan,
    sinks: list[SinkTarget],
    *,
    name: str,
    namespace: str | None,
    selector: dict[str, str],
    version: tuple[int, int],
    notes: dict[str, str],
) -> dict[str, Any]:
    allowlist = mode == "allowlist"
    egress: list[dict[str, Any]] = []
    sink_names = [s for s in sinks if not s.ip]
    dns_patterns = [cilium_pattern(p, version) for p in names.patterns()] if allowlist else []
    dns_patterns += [{"matchName": s.host} for s in sink_names]
    if allowlist or sink_names:
        dns_port: dict[str, Any] = {"ports": [{"port": "53", "protocol": "ANY"}]}
        if dns_patterns:
            dns_port["rules"] = {"dns": dns_patterns}
        egress.append({"toEndpoints": [dict(_KUBE_DNS_CILIUM)], "toPorts": [dns_port]})
    if allowlist:
        for ports, group in names.by_names():
            egress.append({"toFQDNs": [cilium_pattern(d, version) for d in group], "toPorts": _ports(ports)})
        for ports, blocks in plan.by_blocks():
            egress.append({"toCIDRSet": [_block(b) for b in blocks], "toPorts": _ports(ports)})
    for s in sinks:
        target: dict[str, Any] = (
            {"toCIDRSet": [{"cidr": f"{s.host}/{128 if ':' in s.host else 32}"}]}
            if s.ip
            else {"toFQDNs": [{"matchName": s.host}]}
        )
        egress.append({**target, "toPorts": _ports([s.port], s.protocol)})
    deny: list[dict[str, Any]] = []
    everywhere = [*({"cidr": str(n)} for n in plan.deny_all), *(_block(b) for b in plan.special_blocks)]
    if everywhere:  # a deny entry is never excepted: it wins over the exceptions too
        deny.append({"toCIDRSet": everywhere})
    for ports, nets in plan.deny_port_groups():
        deny.append({"toCIDRSet": [{"cidr": c} for c in _cidrs(nets)], "toPorts": _ports(ports)})
    spec: dict[str, Any] = {"endpointSelector": {"matchLabels": selector}}
    if egress:
        spec["egress"] = egress
    if deny:
        spec["egressDeny"] = deny
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": _metadata(name, namespace, notes),
        "spec": spec,
    }

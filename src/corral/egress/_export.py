"""The same network policy rendered for other layers: a node nftables ruleset, Kubernetes
NetworkPolicy and CiliumNetworkPolicy. Blocking a reverse tunnel at more than one layer means
a gap in one (a broken sandbox rule, a pod run without Corral) is not a way out.

Every format is rendered from one flat plan (``_plan``) built from the same rules the proxy
uses, so they agree on what is allowed; what a format cannot express is said in the output
and in ``Export.warnings`` (the CLI prints them on stderr), never silently dropped.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from corral.egress._export_k8s import SinkTarget, cilium, networkpolicy
from corral.egress._export_nft import NODE_TABLE, render_table
from corral.egress._netns import DEFAULT_BASE
from corral.egress._plan import AddressPlan, address_plan, name_plan
from corral.egress._rules import IPNetwork, Rules, parse_ip
from corral.errors import EgressError, RegistryError
from corral.policy import NetworkSection, Policy

__all__ = ["FORMATS", "NODE_TABLE", "Export", "ExportOptions", "apply_script", "export", "render"]

FORMATS = ("nftables", "k8s-networkpolicy", "cilium")
DEFAULT_SELECTOR = (("app.kubernetes.io/name", "corral-node"),)  # the pods deploy/ runs


def system_addresses(name: str) -> tuple[str, ...]:
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(i[4][0]) for i in infos))


@dataclass(frozen=True)
class ExportOptions:
    sources: tuple[str, ...] = (DEFAULT_BASE,)  # sandbox addresses on the node (the egress base)
    proxy_port: int = 3128
    dns_port: int = 53
    log_group: int = 7
    name: str = "corral-egress"
    namespace: str | None = "corral"
    selector: tuple[tuple[str, str], ...] = DEFAULT_SELECTOR
    resolve: bool = False  # NetworkPolicy: allow the addresses allowed names resolve to now
    cilium_version: tuple[int, int] = (1, 19)
    resolver: Callable[[str], tuple[str, ...]] = field(default=system_addresses, compare=False)


@dataclass(frozen=True)
class Export:
    text: str
    warnings: tuple[str, ...] = ()


def _sinks(policy: Policy | None) -> tuple[list[SinkTarget], list[str]]:
    if policy is None:
        return [], []
    out: list[SinkTarget] = []
    notes: list[str] = []
    for s in policy.response.sinks:
        if s.type == "webhook":
            u = urlsplit(s.url)
            host = u.hostname or ""
            port = u.port or (443 if u.scheme == "https" else 80)
            out.append(SinkTarget("webhook", host, port, "TCP", parse_ip(host) is not None))
        elif s.type == "syslog" and not s.address.startswith("/"):
            host, _, port_s = s.address.rpartition(":")
            host = host.strip("[]")
            out.append(SinkTarget("syslog", host, int(port_s), "UDP", parse_ip(host) is not None))
        elif s.type == "syslog":
            notes.append(f"syslog sink {s.address} is a local socket: nothing to allow")
    return out, notes


def _resolve(
    net: NetworkSection, rules: Rules, opt: ExportOptions
) -> tuple[dict[int, list[IPNetwork]], list[str]]:
    """Addresses of the allowed exact names, as the proxy would dial them now (rebinding refused)."""
    extra: dict[int, list[IPNetwork]] = {}
    warnings: list[str] = []
    plan = name_plan(net)
    for port, names in plan.allow.items():
        for n in names:
            if n.startswith("*."):
                warnings.append(f"{n}: a wildcard cannot be resolved; its hosts are unreachable here")
                continue
            try:
                addrs = net.hosts.get(n) or opt.resolver(n)
            except OSError as exc:
                warnings.append(f"{n}: could not resolve ({exc}); not allowed")
                continue
            ips = [parse_ip(a) for a in addrs]
            bad = [
                str(a)
                for a, ip in zip(addrs, ips, strict=True)
                if ip is None or rules.check_resolved(ip, port)
            ]
            if bad:  # the proxy refuses a name with any answer in a denied range: so does the export
                warnings.append(f"{n}:{port}: resolves into denied addresses ({', '.join(bad)}); not allowed")
                continue
            extra.setdefault(port, []).extend(ipaddress.ip_network(ip) for ip in ips if ip is not None)
    return extra, warnings


def _header(net: NetworkSection, plan: AddressPlan) -> list[str]:
    lines = [f"corral firewall for network.mode={net.mode}"]
    if plan.exceptions:
        lines.append(
            "EXCEPTIONS: these always-denied addresses are opened because an allow entry names them "
            "exactly: " + ", ".join(map(str, plan.exceptions))
        )
    return lines


def export(source: Policy | NetworkSection, fmt: str, opt: ExportOptions = ExportOptions()) -> Export:
    """Render the policy for ``fmt``; what the format cannot express is in ``warnings``."""
    policy = source if isinstance(source, Policy) else None
    net = source.network if isinstance(source, Policy) else source
    if fmt not in FORMATS:
        raise RegistryError(f"unknown firewall format {fmt!r}; known: {', '.join(FORMATS)}")
    rules = Rules(net)
    names = name_plan(net)
    warnings: list[str] = []
    extra: dict[int, list[IPNetwork]] = {}
    if fmt == "k8s-networkpolicy" and opt.resolve and net.mode == "allowlist":
        extra, warnings = _resolve(net, rules, opt)
        warnings.append("names were resolved at export time: their addresses go stale; re-export on change")
    plan = address_plan(net, extra)
    sinks, sink_notes = _sinks(policy)
    if plan.exceptions:
        warnings.append(
            "always-denied addresses opened by exact allow entries: " + ", ".join(map(str, plan.exceptions))
        )
    selector = dict(opt.selector)
    notes = {"corral.dev/exceptions": ", ".join(map(str, plan.exceptions))} if plan.exceptions else {}
    doc: dict[str, Any]
    if fmt == "nftables":
        header = _header(net, plan)
        header += [f"alert sink {s.kind} {s.host}:{s.port}/{s.protocol.lower()}: sent by the node agent from "
                   "the node's own addresses, which this table does not filter" for s in sinks]  # fmt: skip
        header += sink_notes
        text = render_table(
            net.mode, plan, names, opt.sources, opt.proxy_port, opt.dns_port, opt.log_group, header
        )
        return Export(text, tuple(warnings))
    if fmt == "k8s-networkpolicy":
        if names.patterns() and net.mode == "allowlist" and not opt.resolve:
            warnings.append(
                "a NetworkPolicy cannot express names ("
                + ", ".join(names.patterns())
                + "): the proxy cannot reach them under this policy; export with --resolve (addresses go "
                "stale) or use the Cilium form"
            )
        for s in sinks:
            if not s.ip:
                warnings.append(
                    f"alert sink {s.kind} {s.host}: a NetworkPolicy cannot allow a name; alerts to it will "
                    "not leave unless its address is allowed (use an address in the policy, or Cilium)"
                )
        doc = networkpolicy(
            net.mode, plan, names, sinks, name=opt.name, namespace=opt.namespace, selector=selector,
            resolved=opt.resolve, notes=notes,
        )  # fmt: skip
    else:
        if names.conflicts:
            raise EgressError(
                "the Cilium form cannot subtract a name from a wildcard ("
                + "; ".join(names.conflicts)
                + "): list the allowed names exactly, or drop the deny"
            )
        doc = cilium(
            net.mode, plan, names, sinks, name=opt.name, namespace=opt.namespace, selector=selector,
            version=opt.cilium_version, notes=notes,
        )  # fmt: skip
    return Export(yaml.safe_dump(doc, sort_keys=False), tuple(warnings))


def render(source: Policy | NetworkSection, fmt: str, opt: ExportOptions = ExportOptions()) -> str:
    return export(source, fmt, opt).text


def render_nftables(source: Policy | NetworkSection, opt: ExportOptions = ExportOptions()) -> str:
    return export(source, "nftables", opt).text


def apply_script(source: Policy | NetworkSection, opt: ExportOptions = ExportOptions()) -> str:
    """Replace Corral's node table atomically (create-if-missing, delete, add) and touch nothing else."""
    return f"add table inet {NODE_TABLE}\ndelete table inet {NODE_TABLE}\n" + render_nftables(source, opt)

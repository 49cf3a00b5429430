"""Redaction for sharing: stable pseudonyms for what identifies the team's own infrastructure.

Internal addresses, host and resource names, account ids, wallet-like strings and
secrets are replaced by pseudonyms (``int-ip-3``, ``host-2``, ``account-1``,
``wallet-1``, ``secret-4``). One ``Redactor`` gives the same value the same
pseudonym in every report and export it touches; the mapping is never written.
Outside endpoints stay: they are what the receiving team needs to act on.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from corral.correlate import CorrelationReport

# Ordered: secrets and wallets before the broader patterns that could eat part of them.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("secret", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----")),
    ("secret", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("secret", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b")),
    ("secret", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}\b")),
    ("secret", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b")),
    ("secret", re.compile(r"(?<=Bearer )[A-Za-z0-9._~+/=-]{8,}")),
    ("secret", re.compile(r"(?i)(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")),
    (
        "secret",
        re.compile(r"(?i)\b(?:password|passwd|pwd|secret|token|api[_-]?key)\s*[=:]\s*(?P<v>[^\s&\"',;]+)"),
    ),
    ("wallet", re.compile(r"\b0x[0-9a-fA-F]{40}\b")),
    ("wallet", re.compile(r"\bbc1[02-9ac-hj-np-z]{20,80}\b")),
    ("wallet", re.compile(r"\b4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}\b")),
    ("wallet", re.compile(r"\b[13][1-9A-HJ-NP-Za-km-z]{25,34}\b")),
    ("account", re.compile(r"(?<=account=)[^\s,;]+")),
    ("account", re.compile(r"(?<=aliuid=)[^\s,;]+")),
    ("account", re.compile(r"(?<=project=)[^\s,;]+")),
    ("account", re.compile(r"(?i)(?<=/subscriptions/)[0-9a-f-]{36}")),
    ("account", re.compile(r"(?<![\d.])\d{12}(?![\d.])|(?<![\d.])\d{16}(?![\d.])")),
    ("host", re.compile(r"\b(?:i|eni|vpc|subnet|vsw|sg|ngw|nat|acl|vm)-[0-9a-z]{6,}\b")),
]
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)[0-9A-Fa-f:]{2,39}(?![0-9A-Za-z:])")
_PSEUDONYM = re.compile(r"(?:int-ip|host|account|wallet|secret)-\d+")
_INTERNAL_NETS = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "127.0.0.0/8",
    )
] + [ipaddress.ip_network(n) for n in ("fc00::/7", "fe80::/10", "::1/128")]


class Redactor:
    """Consistent pseudonyms for one sharing session."""

    def __init__(self, internal: Iterable[str] = (), names: Iterable[str] = ()) -> None:
        self._map: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self.internal = {x for x in internal if x}
        names_sorted = sorted({n for n in names if n and len(n) >= 3}, key=len, reverse=True)
        self._names = re.compile("|".join(re.escape(n) for n in names_sorted)) if names_sorted else None

    def pseudonym(self, kind: str, value: str) -> str:
        if _PSEUDONYM.fullmatch(value):
            return value  # already redacted by an earlier pattern
        key = (kind, value)
        if key not in self._map:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            self._map[key] = f"{kind}-{self._counts[kind]}"
        return self._map[key]

    def _sub(self, kind: str, m: re.Match[str]) -> str:
        if "v" in m.re.groupindex:  # replace only the value, keep the key that found it
            whole, start = m.group(0), m.start("v") - m.start(0)
            return whole[:start] + self.pseudonym(kind, m.group("v")) + whole[start + len(m.group("v")) :]
        return self.pseudonym(kind, m.group(0))

    def is_internal(self, ip: str) -> bool:
        if ip in self.internal:
            return True
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in _INTERNAL_NETS if net.version == addr.version)

    def text(self, s: str) -> str:
        for kind, pat in _PATTERNS:
            s = pat.sub(lambda m, k=kind: self._sub(k, m), s)  # type: ignore[misc]
        if self._names is not None:
            s = self._names.sub(lambda m: self.pseudonym("host", m.group(0)), s)
        for pat in (_IPV4, _IPV6):
            s = pat.sub(
                lambda m: (
                    self.pseudonym("int-ip", m.group(0)) if self.is_internal(m.group(0)) else m.group(0)
                ),
                s,
            )
        return s

    def apply(self, obj: Any) -> Any:
        """A copy of a JSON-like value with every string redacted (mapping keys included)."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.apply(k): self.apply(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.apply(v) for v in obj]
        return obj


def redactor_for(report: CorrelationReport) -> Redactor:
    """A redactor that knows the run's own addresses and names (nodes, sandboxes, reporters)."""
    internal: set[str] = set()
    names: set[str] = set()
    for c in report.calls.values():
        for ip in (c.host, c.sandbox_ip):
            if ip:
                internal.add(ip)
        if c.sandbox_id:
            names.add(c.sandbox_id)
    for rec in [*report.attributions, *report.unattributed]:
        for n in (rec.reporter, rec.workload):
            if n:
                names.add(n)
    for a in report.attributions:
        local = a.src_ip if a.remote_ip == a.dst_ip else a.dst_ip
        if local:
            internal.add(local)
    # A name that is an address is handled as an address.
    names = {n for n in names if not _IPV4.fullmatch(n)}
    return Redactor(internal, names)


def redact_report(report: CorrelationReport, redactor: Redactor | None = None) -> CorrelationReport:
    """The report with every string field redacted (same pseudonyms as ``redactor``'s other uses)."""
    r = redactor or redactor_for(report)
    return CorrelationReport.model_validate(r.apply(report.to_jsonable()))

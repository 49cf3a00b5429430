"""Policy section for network egress (default: no network at all).

``mode: allowlist`` gives a sandbox a network namespace whose only way out is
Corral's proxy and DNS resolver; they allow what ``allow`` lists, minus what
``deny`` lists. Entries name a domain (exact, or ``*.suffix``) or an IP/CIDR,
each with ports (443 when omitted). A string is shorthand for an entry:
``"pypi.org"``, ``"*.pythonhosted.org:443"``, ``"198.18.0.2:80,8080"``,
``"[2001:db8::1]:443"``, ``"10.1.2.0/24"``.

Broad entries that would open the whole internet (``*``, ``*.com``,
``*.co.uk``, ``*.github.io``, ``0.0.0.0/0``, a /8) are refused.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from corral.policy._base import Section

GiB = 1024**3

# Shortest prefix an IP entry may have: anything broader is "the internet" or a whole provider.
MIN_PREFIX_V4 = 16
MIN_PREFIX_V6 = 48

# Multi-label public suffixes (and shared-hosting suffixes where anyone gets a subdomain):
# a wildcard directly under one of these would allow strangers' hosts. Not the full PSL, the common ones.
PUBLIC_SUFFIXES = frozenset(
    {
        "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "com.au", "net.au", "org.au", "co.jp", "ne.jp",
        "or.jp", "com.br", "com.cn", "net.cn", "co.in", "co.nz", "co.za", "com.mx", "co.kr", "com.tw",
        "com.sg", "com.hk", "co.il", "com.tr", "com.ar", "github.io", "githubusercontent.com",
        "gitlab.io", "amazonaws.com", "s3.amazonaws.com", "cloudfront.net", "herokuapp.com",
        "appspot.com", "azurewebsites.net", "blob.core.windows.net", "web.app", "firebaseapp.com",
        "blogspot.com", "pages.dev", "workers.dev", "vercel.app", "netlify.app", "ngrok.io",
        "ngrok-free.app", "trycloudflare.com", "repl.co", "glitch.me", "fly.dev", "onrender.com",
        "r2.dev", "duckdns.org", "no-ip.org", "serveo.net", "loca.lt",
    }
)  # fmt: skip

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def _check_domain(d: str) -> str:
    d = d.strip().lower().rstrip(".")
    if d in ("*", "*.", ""):
        raise ValueError(f"{d!r} is too broad: it would allow every host")
    wildcard = d.startswith("*.")
    base = d[2:] if wildcard else d
    if "*" in base:
        raise ValueError(f"{d!r}: '*' is only allowed as a leading '*.' label")
    labels = base.split(".")
    if not base or not all(_LABEL.match(x) for x in labels):
        raise ValueError(f"{d!r} is not a valid domain name (labels of 1-63 letters, digits, '-', '_')")
    if len(d) > 253:  # RFC 1035 (and Cilium's CRD): longer names cannot exist, so cannot be allowed
        raise ValueError(f"{d[:40]}...: a domain name is at most 253 characters, this one has {len(d)}")
    if wildcard and (len(labels) < 2 or base in PUBLIC_SUFFIXES):
        raise ValueError(f"{d!r} is too broad: a wildcard must sit under a registrable domain")
    return d


def _check_cidr(c: str) -> str:
    try:
        net = ipaddress.ip_network(c.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"{c!r} is not an IP address or CIDR") from exc
    floor = MIN_PREFIX_V4 if net.version == 4 else MIN_PREFIX_V6
    if net.prefixlen < floor:
        raise ValueError(f"{c!r} is too broad: prefix must be /{floor} or longer")
    return str(net)


def _parse_ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",")]


def _shorthand(value: Any) -> Any:
    """Turn ``"name[:port,...]"`` / ``"ip[/len]"`` / ``"[v6]:port"`` into an entry mapping."""
    if not isinstance(value, str):
        return value
    s = value.strip()
    try:
        ipaddress.ip_network(s, strict=False)
        return {"cidr": s}
    except ValueError:
        pass
    m = re.fullmatch(r"\[([0-9a-fA-F:./]+)\](?::([\d,]+))?", s)
    if m:
        return {"cidr": m.group(1), **({"ports": _parse_ports(m.group(2))} if m.group(2) else {})}
    host, sep, ports = s.rpartition(":")
    if sep and re.fullmatch(r"[\d,]+", ports):
        key = "cidr" if re.fullmatch(r"[\d./]+", host) else "domain"
        return {key: host, "ports": _parse_ports(ports)}
    return {"domain": s}


class NetworkEntry(Section):
    """One allow or deny entry: a domain or an IP/CIDR, with ports."""

    domain: str | None = Field(default=None, description="Exact name, or '*.suffix' for strict subdomains.")
    cidr: str | None = Field(default=None, description="IP address or CIDR (/16 or longer for IPv4).")
    ports: tuple[int, ...] | None = Field(
        default=None, description="Ports this entry covers. Allow entries: 443 when omitted. Deny: all."
    )

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str | None) -> str | None:
        return None if v is None else _check_domain(v)

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str | None) -> str | None:
        return None if v is None else _check_cidr(v)

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None:
            if not v:
                raise ValueError("ports must not be empty (omit the key for the default)")
            bad = [p for p in v if not 1 <= p <= 65535]
            if bad:
                raise ValueError(f"ports out of range 1-65535: {bad}")
        return v

    @model_validator(mode="after")
    def _one_target(self) -> NetworkEntry:
        if (self.domain is None) == (self.cidr is None):
            raise ValueError("an entry names exactly one of 'domain' or 'cidr'")
        return self

    def label(self) -> str:
        target = self.domain or self.cidr or "?"
        return f"{target}:{','.join(map(str, self.ports))}" if self.ports else target


Entry = Annotated[NetworkEntry, BeforeValidator(_shorthand)]


def _check_hosts(v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name, addrs in v.items():
        key = _check_domain(name)
        if key.startswith("*."):
            raise ValueError(f"hosts: {name!r}: static answers are for exact names")
        out[key] = tuple(str(ipaddress.ip_address(a)) for a in addrs)
    return out


class NetworkSection(Section):
    mode: Literal["none", "allowlist"] = Field(
        default="none",
        description="none: no network interface but loopback. allowlist: egress via the proxy.",
    )
    allow: tuple[Entry, ...] = Field(default=(), description="Destinations the proxy may dial.")
    deny: tuple[Entry, ...] = Field(default=(), description="Destinations always refused; wins over allow.")
    hosts: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Static DNS answers (name -> addresses) used instead of upstream resolution.",
    )
    connections_max: int = Field(default=1024, gt=0, description="Proxy connections per sandbox lifetime.")
    transfer_max_bytes: int = Field(
        default=1 * GiB, gt=0, description="Bytes relayed (both directions) per sandbox lifetime."
    )
    dns_queries_max: int = Field(default=4096, gt=0, description="DNS queries answered per sandbox lifetime.")

    @field_validator("hosts", mode="after")
    @classmethod
    def _hosts(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        return _check_hosts(v)

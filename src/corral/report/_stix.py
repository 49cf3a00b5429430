"""Incidents as a STIX 2.1 bundle, for threat-intelligence sharing.

Per incident: one ``observed-data`` over the network traffic seen (with its
address SCOs), and one ``sighting`` of each outside endpoint's ``indicator``.
Only outside endpoints become indicators; internal addresses are never
published as indicators (and are pseudonymised when the report is redacted).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stix2

from corral.correlate import CorrelationReport, Incident

_IDENTITY = stix2.Identity(
    id="identity--6b0f4c1e-3c9a-4d5e-9f3a-0c5e7c1a2b3d",
    name="Corral",
    identity_class="system",
    description="Corral correlation of infrastructure logs with RL traces",
    created="2026-01-01T00:00:00Z",
    modified="2026-01-01T00:00:00Z",
)


def _ts(t: float | None) -> datetime:
    return datetime.fromtimestamp(t if t is not None else 0.0, UTC)


def _outside(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False  # a pseudonym after redaction: internal by construction
    return not (addr.is_private and not _is_documentation(addr)) and not addr.is_loopback


def _is_documentation(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # Documentation ranges count as outside: they stand for outside hosts in examples and tests.
    return any(
        addr in ipaddress.ip_network(n)
        for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
        if ipaddress.ip_network(n).version == addr.version
    )


def stix_bundle(report: CorrelationReport) -> stix2.Bundle:
    """The bundle: identity, indicators for outside endpoints, observed data and sightings."""
    objects: list[Any] = [_IDENTITY]
    indicators: dict[tuple[str, int | None], stix2.Indicator] = {}
    for inc in report.incidents:
        for d in inc.destinations:
            if not d.ip or not _outside(d.ip) or (d.ip, d.port) in indicators:
                continue
            indicators[(d.ip, d.port)] = _indicator(d.ip, d.port, inc)
    objects.extend(indicators.values())
    for inc in report.incidents:
        obs = _observed(inc)
        if obs is None:
            continue
        objects.extend(obs)
        observed = obs[-1]
        for d in inc.destinations:
            ind = indicators.get((d.ip or "", d.port))
            if ind is None:
                continue
            objects.append(
                stix2.Sighting(
                    sighting_of_ref=ind.id,
                    observed_data_refs=[observed.id],
                    where_sighted_refs=[_IDENTITY.id],
                    first_seen=_ts(inc.first_time),
                    last_seen=_ts(max(inc.last_time or 0.0, (inc.first_time or 0.0) + 0.001)),
                    count=d.count,
                    created_by_ref=_IDENTITY.id,
                    description=_describe(inc),
                )
            )
    return stix2.Bundle(objects=objects, allow_custom=False)


def _indicator(ip: str, port: int | None, inc: Incident) -> stix2.Indicator:
    kind = "ipv6-addr" if ":" in ip else "ipv4-addr"
    pattern = f"[network-traffic:dst_ref.type = '{kind}' AND network-traffic:dst_ref.value = '{ip}'"
    pattern += f" AND network-traffic:dst_port = {port}]" if port is not None else "]"
    return stix2.Indicator(
        name=f"Outside endpoint contacted by an RL agent: {ip}" + (f":{port}" if port is not None else ""),
        pattern=pattern,
        pattern_type="stix",
        valid_from=_ts(inc.first_time),
        indicator_types=["malicious-activity"],
        created_by_ref=_IDENTITY.id,
    )


def _observed(inc: Incident) -> list[Any] | None:
    scos: list[Any] = []
    traffic: list[Any] = []
    for d in inc.destinations:
        if not d.ip:
            continue
        try:
            addr = ipaddress.ip_address(d.ip)
        except ValueError:
            continue
        sco = stix2.IPv6Address(value=d.ip) if addr.version == 6 else stix2.IPv4Address(value=d.ip)
        scos.append(sco)
        traffic.append(
            stix2.NetworkTraffic(
                dst_ref=sco.id,
                dst_port=d.port,
                protocols=[d.proto or "ip"],
            )
        )
    if not traffic:
        return None
    first = _ts(inc.first_time)
    last = _ts(max(inc.last_time or 0.0, inc.first_time or 0.0))
    obs = stix2.ObservedData(
        first_observed=first,
        last_observed=last,
        number_observed=max(1, inc.record_count),
        object_refs=[o.id for o in scos + traffic],
        created_by_ref=_IDENTITY.id,
    )
    return [*scos, *traffic, obs]


def _describe(inc: Incident) -> str:
    where = "ambiguous between episodes" if inc.ambiguous else f"run {inc.run_id}, episode {inc.episode_id}"
    return f"Corral incident {inc.id} ({inc.severity}): {inc.record_count} log records, {where}"


def write_stix(report: CorrelationReport, path: Path | str) -> None:
    """Write the incidents as a STIX 2.1 bundle (JSON) to ``path``."""
    Path(path).write_text(stix_bundle(report).serialize(pretty=True), encoding="utf-8")

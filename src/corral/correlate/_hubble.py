"""Cilium Hubble flows as printed by ``hubble observe -o json`` (``flow.proto`` in JSON).

Each line is ``{"flow": {...}, "node_name": ..., "time": ...}`` (or a bare
flow) with ``time``, ``verdict`` (FORWARDED, DROPPED, AUDIT, ERROR, ...),
``IP.{source,destination}``, ``l4.{TCP,UDP}.{source_port,destination_port}``,
``source``/``destination`` endpoints (``namespace``, ``pod_name``),
``node_name``, ``traffic_direction`` and ``drop_reason_desc``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from corral.correlate._record import LogRecord, parse_time, to_int
from corral.correlate._registry import JsonLineReader, first_json, register

_VERDICT = {"FORWARDED": "accept", "DROPPED": "deny", "ERROR": "deny", "AUDIT": "log", "REDIRECTED": "accept"}


def _flow(obj: dict[str, Any]) -> dict[str, Any] | None:
    f = obj.get("flow", obj)
    return f if isinstance(f, dict) and "verdict" in f and "IP" in f else None


@register
class HubbleFlowReader(JsonLineReader):
    """Cilium Hubble flow JSON."""

    name = "hubble"
    title = "Cilium Hubble flows"
    detect_order = 30

    def sniff(self, head: list[str]) -> bool:
        obj = first_json(head)
        return obj is not None and _flow(obj) is not None

    def parse_obj(self, obj: dict[str, Any], line: int, src: str) -> Iterable[LogRecord]:
        f = _flow(obj)
        if f is None:
            raise ValueError("no flow")
        ip = f["IP"]
        l4 = f.get("l4") or {}
        ports: dict[str, Any] = next((v for v in l4.values() if isinstance(v, dict)), {})
        proto = next(iter(l4), None)
        ts = parse_time(f.get("time") or obj.get("time"))
        egress = f.get("traffic_direction") == "EGRESS"
        ep = (f.get("source") if egress else f.get("destination")) or {}
        ns = ep.get("namespace")
        return [
            LogRecord(
                file=src,
                line=line,
                format=self.name,
                start=ts,
                end=ts,
                src_ip=ip["source"],
                dst_ip=ip["destination"],
                src_port=to_int(ports.get("source_port")),
                dst_port=to_int(ports.get("destination_port")),
                proto=proto.lower() if proto else None,
                action=_VERDICT.get(str(f["verdict"]), str(f["verdict"]).lower()),
                reporter=f.get("node_name") or obj.get("node_name"),
                signature=f.get("drop_reason_desc"),
                direction="out" if egress else ("in" if f.get("traffic_direction") == "INGRESS" else None),
                detail=f"namespace={ns}" if ns else None,
                workload=ep.get("pod_name"),
            )
        ]

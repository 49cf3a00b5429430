"""Suricata EVE JSON: ``flow``, ``alert``, ``dns`` and ``tls`` events (others keep their 5-tuple).

Common fields ``timestamp``, ``event_type``, ``src_ip``, ``src_port``,
``dest_ip``, ``dest_port``, ``proto``, ``in_iface``, ``host`` (sensor name);
``alert.{action,signature,signature_id,severity,category}``,
``flow.{start,end,bytes_toserver,bytes_toclient,pkts_toserver,pkts_toclient}``,
``dns.{rrname,rrtype}`` (``dns.queries[]`` in EVE v3), ``tls.sni``, per the
Suricata "EVE JSON format" documentation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from corral.correlate._record import LogRecord, parse_time, proto_name, to_int
from corral.correlate._registry import JsonLineReader, first_json, register

_SEVERITY = {1: "high", 2: "medium", 3: "low"}


def _dns_name(dns: dict[str, Any]) -> str | None:
    if dns.get("rrname"):
        return str(dns["rrname"])
    queries = dns.get("queries")
    if isinstance(queries, list) and queries and isinstance(queries[0], dict):
        return str(queries[0].get("rrname"))
    return None


def _flow_id(v: Any) -> str | None:
    # One flow's events (flow, alert, dns, tls ...) share it on one sensor.
    if isinstance(v, bool) or not isinstance(v, int | str):
        return None
    return str(v)[:40]


@register
class SuricataEveReader(JsonLineReader):
    """Suricata EVE JSON (flow, alert, dns, tls)."""

    name = "suricata-eve"
    title = "Suricata EVE JSON"
    detect_order = 30

    def sniff(self, head: list[str]) -> bool:
        obj = first_json(head)
        return obj is not None and "event_type" in obj and "timestamp" in obj and "flow_id" in obj

    def parse_obj(self, obj: dict[str, Any], line: int, src: str) -> Iterable[LogRecord]:
        et = str(obj["event_type"])
        if not obj.get("src_ip") or not obj.get("dest_ip"):
            if et in ("stats", "engine"):
                return []  # counted as ignored: sensor bookkeeping, no traffic
            raise ValueError(f"{et[:40]} event without addresses")
        ts = parse_time(obj["timestamp"])
        rec = LogRecord(
            file=src,
            line=line,
            format=self.name,
            kind=et,
            start=ts,
            end=ts,
            src_ip=obj["src_ip"],
            src_port=to_int(obj.get("src_port")),
            dst_ip=obj["dest_ip"],
            dst_port=to_int(obj.get("dest_port")),
            proto=proto_name(obj.get("proto")),
            reporter=obj.get("host") or obj.get("in_iface"),
            direction={"to_server": "out", "to_client": "in"}.get(str(obj.get("direction", ""))),
            flow_id=_flow_id(obj.get("flow_id")),
        )
        if et == "alert":
            a = obj.get("alert") or {}
            rec.action = "deny" if a.get("action") == "blocked" else "alert"
            rec.signature = a.get("signature")
            rec.severity = _SEVERITY.get(to_int(a.get("severity")) or 3, "low")
            rec.detail = f"sid={a.get('signature_id')} category={a.get('category')}"
        elif et == "flow":
            f = obj.get("flow") or {}
            rec.start = parse_time(f.get("start")) or ts
            rec.end = parse_time(f.get("end")) or ts
            rec.bytes = (to_int(f.get("bytes_toserver")) or 0) + (to_int(f.get("bytes_toclient")) or 0)
            rec.packets = (to_int(f.get("pkts_toserver")) or 0) + (to_int(f.get("pkts_toclient")) or 0)
            rec.action = "accept"
            rec.detail = f"state={f.get('state')}" if f.get("state") else None
        elif et == "dns":
            name = _dns_name(obj.get("dns") or {})
            rec.detail = f"dns={name}" if name else None
        elif et == "tls":
            sni = (obj.get("tls") or {}).get("sni")
            rec.detail = f"sni={sni}" if sni else None
        return [rec]

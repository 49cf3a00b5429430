"""Generic CSV (with header) or JSON lines, mapped onto the record by a column mapping.

The mapping names, for each record field (``start``, ``end``, ``src_ip``,
``src_port``, ``dst_ip``, ``dst_port``, ``proto``, ``action``, ``bytes``,
``packets``, ``reporter``, ``signature``, ``severity``, ``direction``,
``detail``, ``workload``), the column holding it; dotted names reach into
nested JSON. Unmapped fields fall back to common column names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from corral.correlate._keyed import KeyedReader, head_keys, pick
from corral.correlate._record import LogRecord, parse_time, proto_name, to_int
from corral.correlate._registry import register
from corral.errors import InputError

DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "start": ("start", "start_time", "timestamp", "time", "ts", "@timestamp"),
    "end": ("end", "end_time"),
    "src_ip": ("src_ip", "source_ip", "src", "srcaddr", "source.ip"),
    "src_port": ("src_port", "source_port", "sport", "srcport", "source.port"),
    "dst_ip": ("dst_ip", "dest_ip", "destination_ip", "dst", "dstaddr", "destination.ip"),
    "dst_port": ("dst_port", "dest_port", "destination_port", "dport", "dstport", "destination.port"),
    "proto": ("proto", "protocol", "transport"),
    "action": ("action", "verdict", "decision", "disposition"),
    "bytes": ("bytes",),
    "packets": ("packets",),
    "reporter": ("reporter", "host", "hostname", "observer"),
    "signature": ("signature", "rule", "rule_name"),
    "severity": ("severity", "level"),
    "direction": ("direction",),
    "detail": ("detail", "message"),
    "workload": ("workload", "container_id", "pod"),
}
_ACTIONS = {"allow": "accept", "allowed": "accept", "accept": "accept", "pass": "accept", "permit": "accept"}
_ACTIONS |= {"deny": "deny", "denied": "deny", "drop": "deny", "dropped": "deny", "reject": "deny"}
_ACTIONS |= {"block": "deny", "blocked": "deny", "alert": "alert"}


@register
class GenericReader(KeyedReader):
    """Any CSV-with-header or JSON-lines log, through a column mapping."""

    name = "generic"
    title = "Generic CSV / JSON lines (column mapping)"
    detect_order = 90

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        unknown = set(mapping or {}) - DEFAULT_COLUMNS.keys()
        if unknown:
            raise InputError(f"generic log mapping: unknown record fields {sorted(unknown)}")
        self.columns = {
            k: ((mapping or {})[k],) if k in (mapping or {}) else v for k, v in DEFAULT_COLUMNS.items()
        }

    def sniff(self, head: list[str]) -> bool:
        keys, obj = head_keys(head)
        row = obj or dict.fromkeys(keys, "x")
        return (
            pick(row, *self.columns["src_ip"]) is not None and pick(row, *self.columns["dst_ip"]) is not None
        )

    def parse_row(self, row: dict[str, Any], line: int, src: str) -> Iterable[LogRecord]:
        def get(name: str) -> Any:
            return pick(row, *self.columns[name])

        src_ip, dst_ip = get("src_ip"), get("dst_ip")
        if not src_ip or not dst_ip:
            raise ValueError("no source or destination address")
        start = parse_time(get("start"))
        action = get("action")
        return [
            LogRecord(
                file=src,
                line=line,
                format=self.name,
                kind="alert" if get("signature") and get("severity") else "flow",
                start=start,
                end=parse_time(get("end")) or start,
                src_ip=str(src_ip),
                src_port=to_int(get("src_port")),
                dst_ip=str(dst_ip),
                dst_port=to_int(get("dst_port")),
                proto=proto_name(get("proto")),
                action=_ACTIONS.get(str(action).lower(), str(action).lower()) if action else None,
                bytes=to_int(get("bytes")),
                packets=to_int(get("packets")),
                reporter=_s(get("reporter")),
                signature=_s(get("signature")),
                severity=_s(get("severity")),
                direction=_s(get("direction")),
                detail=_s(get("detail")),
                workload=_s(get("workload")),
            )
        ]


def _s(v: Any) -> str | None:
    return None if v is None else str(v)

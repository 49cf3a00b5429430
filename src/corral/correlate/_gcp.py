"""Google Cloud VPC Flow Logs and VPC firewall rule logs, as exported Cloud Logging entries.

Each record is a LogEntry (one JSON object per line, or the ``gcloud logging
read --format=json`` array) whose ``jsonPayload`` holds, for flow logs,
``connection`` (``src_ip``, ``src_port``, ``dest_ip``, ``dest_port``,
``protocol``), ``start_time``, ``end_time``, ``bytes_sent``, ``packets_sent``
and ``reporter``; for firewall rule logs, ``connection``, ``disposition``
(ALLOWED/DENIED), ``rule_details`` (``reference``, ``action``, ``direction``)
and ``instance``. Field names from "About VPC Flow Logs records" and
"VPC firewall rules logging format"; int64 values arrive as strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from corral.correlate._lines import ByteSource, head_lines
from corral.correlate._record import LogRecord, ReadStats, parse_time, proto_name, to_int
from corral.correlate._registry import PARSE_ERRORS, Batcher, JsonLineReader, load_json, register, why


def _payload_kind(obj: dict[str, Any]) -> str | None:
    payload = obj.get("jsonPayload")
    if not isinstance(payload, dict) or not isinstance(payload.get("connection"), dict):
        return None
    log_name = str(obj.get("logName", ""))
    if "disposition" in payload or "firewall" in log_name:
        return "firewall"
    return "flow"


def _first_entry(head: list[str]) -> dict[str, Any] | None:
    text = head[0]
    if text.startswith("["):
        text = text[1:].strip()
        if not text:
            text = head[1] if len(head) > 1 else ""
    try:
        obj = load_json(text.rstrip(","))
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


@register
class GcpLogsReader(JsonLineReader):
    """GCP VPC Flow Logs and firewall rule logs (Cloud Logging JSON entries)."""

    name = "gcp-vpc"
    title = "GCP VPC Flow Logs / firewall rule logs"
    detect_order = 30

    def sniff(self, head: list[str]) -> bool:
        obj = _first_entry(head)
        return obj is not None and _payload_kind(obj) is not None

    def read(self, path: Path, stats: ReadStats) -> Iterator[pa.RecordBatch]:
        head = head_lines(path, 1)
        if not head or not head[0].startswith("["):
            yield from super().read(path, stats)
            return
        # A JSON array export is one document: parsed whole, up to a size bound (exports are per query).
        with ByteSource(path) as src:
            data = src.read_all()
        if data is None:
            stats.bad(1, "", str(src.error))
            return
        try:
            entries = load_json(data.decode("utf-8", "replace"))
        except ValueError as exc:
            stats.bad(1, "", f"invalid JSON array: {exc}")
            return
        if not isinstance(entries, list):
            stats.bad(1, "", "not a JSON array")
            return
        batcher = Batcher(stats)
        for i, entry in enumerate(entries, 1):
            try:
                if not isinstance(entry, dict):
                    raise ValueError("entry is not an object")
                recs = list(self.parse_obj(entry, i, str(path)))
            except PARSE_ERRORS as exc:
                stats.bad(i, _sample(entry), f"entry {i}: {why(exc)}")
                continue
            batcher.add(recs, i, _sample(entry))
            if batcher.full and (b := batcher.take()) is not None:
                yield b
        if (b := batcher.take()) is not None:
            yield b

    def parse_obj(self, obj: dict[str, Any], line: int, src: str) -> Iterable[LogRecord]:
        kind = _payload_kind(obj)
        if kind is None:
            raise ValueError("not a VPC flow or firewall log entry")
        p: dict[str, Any] = obj["jsonPayload"]
        c: dict[str, Any] = p["connection"]
        if not c.get("src_ip") or not c.get("dest_ip"):
            raise ValueError("connection without addresses")
        ts = parse_time(obj.get("timestamp"))
        if kind == "flow":
            inst = p.get("src_instance") if p.get("reporter") == "SRC" else p.get("dest_instance")
            return [
                LogRecord(
                    file=src,
                    line=line,
                    format=self.name,
                    start=parse_time(p.get("start_time")) or ts,
                    end=parse_time(p.get("end_time")) or ts,
                    src_ip=c["src_ip"],
                    src_port=to_int(c.get("src_port")),
                    dst_ip=c["dest_ip"],
                    dst_port=to_int(c.get("dest_port")),
                    proto=proto_name(c.get("protocol")),
                    action="accept",
                    bytes=to_int(p.get("bytes_sent")),
                    packets=to_int(p.get("packets_sent")),
                    reporter=(inst or {}).get("vm_name") if isinstance(inst, dict) else None,
                    direction={"SRC": "out", "DEST": "in"}.get(str(p.get("reporter"))),
                )
            ]
        rule = p.get("rule_details") or {}
        inst = p.get("instance") or {}
        disposition = str(p.get("disposition", "")).upper()
        return [
            LogRecord(
                file=src,
                line=line,
                format=self.name,
                start=ts,
                end=ts,
                src_ip=c["src_ip"],
                src_port=to_int(c.get("src_port")),
                dst_ip=c["dest_ip"],
                dst_port=to_int(c.get("dest_port")),
                proto=proto_name(c.get("protocol")),
                action={"ALLOWED": "accept", "DENIED": "deny"}.get(disposition, disposition.lower() or None),
                reporter=inst.get("vm_name"),
                signature=rule.get("reference"),
                direction={"EGRESS": "out", "INGRESS": "in"}.get(str(rule.get("direction", "")).upper()),
                detail=f"project={inst['project_id']}" if inst.get("project_id") else None,
            )
        ]


def _sample(entry: Any) -> str:
    try:
        return json.dumps(entry)[:300]
    except (ValueError, TypeError, RecursionError):
        return repr(type(entry))

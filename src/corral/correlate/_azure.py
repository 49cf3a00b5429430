"""Azure NSG flow logs, version 2.

A blob is one JSON document ``{"records": [...]}``; each record has ``time``,
``resourceId``, ``properties.Version`` and ``properties.flows[].rule`` with
``flows[].mac`` and ``flowTuples``. A v2 tuple is comma-separated: Unix time,
source IP, destination IP, source port, destination port, protocol (T/U),
direction (I/O), decision (A/D), flow state (B/C/E), then packets and bytes
source-to-destination and destination-to-source (empty in state B), per the
Network Watcher "NSG flow log schema". Blobs are hourly per NSG, so the
document is parsed whole; tuples stream out in batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from corral.correlate._lines import ByteSource
from corral.correlate._record import LogRecord, ReadStats, proto_name, to_int
from corral.correlate._registry import PARSE_ERRORS, Batcher, LogReader, load_json, register, why


@register
class AzureNsgFlowReader(LogReader):
    """Azure NSG flow logs v1/v2 (Network Watcher JSON blobs)."""

    name = "azure-nsg-flow"
    title = "Azure NSG flow logs"
    detect_order = 30

    def sniff(self, head: list[str]) -> bool:
        text = " ".join(head[:10])
        return '"records"' in text and ("NetworkSecurityGroupFlowEvent" in text or "flowTuples" in text)

    def read(self, path: Path, stats: ReadStats) -> Iterator[pa.RecordBatch]:
        with ByteSource(path) as src:
            data = src.read_all()
        if data is None:
            stats.bad(1, "", str(src.error))
            return
        try:
            doc = load_json(data.decode("utf-8", "replace"))
        except ValueError as exc:
            stats.bad(getattr(exc, "lineno", 1), "", f"invalid JSON: {exc}")
            return
        records = doc.get("records") if isinstance(doc, dict) else None
        if not isinstance(records, list):
            stats.bad(1, "", "no records array")
            return
        batcher = Batcher(stats)
        for i, rec in enumerate(records, 1):
            for rule, mac, tuple_text in _tuples(rec, stats, i):
                try:
                    recs = [self._parse_tuple(tuple_text, rule, mac, i, str(path))]
                except PARSE_ERRORS as exc:
                    stats.bad(i, tuple_text, f"record {i}: {why(exc)}")
                    continue
                batcher.add(recs, i, tuple_text)
                if batcher.full and (b := batcher.take()) is not None:
                    yield b
        if (b := batcher.take()) is not None:
            yield b

    def _parse_tuple(self, text: str, rule: str, mac: str, rec_no: int, src: str) -> LogRecord:
        t = text.split(",", 13)
        if len(t) not in (8, 13):
            raise ValueError(f"{len(t)} tuple fields, expected 8 (v1) or 13 (v2)")
        ts = float(int(t[0]))
        decision = {"A": "accept", "D": "deny"}.get(t[7])
        if decision is None or t[6] not in ("I", "O"):
            raise ValueError("bad direction or decision")
        pk = to_int(t[9]) if len(t) == 13 else None
        by = to_int(t[10]) if len(t) == 13 else None
        pk2 = to_int(t[11]) if len(t) == 13 else None
        by2 = to_int(t[12]) if len(t) == 13 else None
        return LogRecord(
            file=src,
            line=rec_no,  # the record's index in the blob: the document has no useful line numbers
            format=self.name,
            start=ts,
            end=ts,
            src_ip=t[1],
            dst_ip=t[2],
            src_port=to_int(t[3]),
            dst_port=to_int(t[4]),
            proto=proto_name(t[5]),
            direction="in" if t[6] == "I" else "out",
            action=decision,
            packets=None if pk is None else pk + (pk2 or 0),
            bytes=None if by is None else by + (by2 or 0),
            reporter=f"mac={mac}" if mac else None,
            signature=rule or None,
        )


def _tuples(rec: Any, stats: ReadStats, i: int) -> Iterator[tuple[str, str, str]]:
    try:
        for group in rec["properties"]["flows"]:
            for flow in group["flows"]:
                for tup in flow["flowTuples"]:
                    if not isinstance(tup, str):
                        raise TypeError(f"flow tuple is {type(tup).__name__}, not text")
                    yield str(group.get("rule", ""))[:200], str(flow.get("mac", ""))[:64], tup[:1000]
    except PARSE_ERRORS as exc:
        stats.bad(i, _sample(rec), f"record {i}: {why(exc)}")


def _sample(rec: Any) -> str:
    try:
        return json.dumps(rec)[:300]
    except (ValueError, TypeError, RecursionError):
        return repr(type(rec))

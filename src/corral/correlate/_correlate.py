"""``correlate()``: read logs and traces, attribute records, group incidents."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from corral.correlate._attribute import EGRESS_SCHEMA, METHODS, attribute
from corral.correlate._incidents import build_incidents
from corral.correlate._record import RECORD_SCHEMA, ReadStats
from corral.correlate._registry import LogReader, read_logs
from corral.correlate._result import (
    Attribution,
    CorrelationReport,
    FileStatsOut,
    Incident,
    LogRecordOut,
    SampleOut,
)
from corral.correlate._traces import TraceSet, load_traces
from corral.errors import InputError
from corral.events import TraceRecord

_RECORD_COLS = ["file", "line", "format", "kind", "start", "end", "src_ip", "src_port", "dst_ip", "dst_port"]
_RECORD_COLS += ["proto", "action", "signature", "severity", "reporter", "detail", "workload"]


@dataclass
class CorrelationResult:
    """Attributed and unattributed records as Arrow tables, with typed views built on demand."""

    attributed: pa.Table  # record columns + attribution columns
    unattributed_table: pa.Table
    traces: TraceSet
    log_stats: list[ReadStats]
    skew_s: float
    call_ids: list[str]  # tool_call_id by cid (the ``candidate_cids`` column holds cids)
    include_allowed: bool = False
    generated_at: float = field(default_factory=time.time)

    @property
    def record_count(self) -> int:
        return int(self.attributed.num_rows + self.unattributed_table.num_rows)

    @cached_property
    def attributions(self) -> list[Attribution]:
        ids = self.call_ids
        return [
            _attribution(row, [ids[c] for c in row["candidate_cids"]]) for row in self.attributed.to_pylist()
        ]

    @cached_property
    def unattributed(self) -> list[LogRecordOut]:
        return [_record_out(row) for row in self.unattributed_table.to_pylist()]

    @cached_property
    def calls_by_id(self) -> dict[str, TraceRecord]:
        return {c.tool_call_id: c for c in self.traces.calls}

    @cached_property
    def incidents(self) -> list[Incident]:
        return build_incidents(self.attributions, self.calls_by_id, self.traces.alerts, self.include_allowed)

    def report(self) -> CorrelationReport:
        """The exportable form; ``calls`` holds the tool calls any attribution or incident names."""
        used: set[str] = set()
        for a in self.attributions:
            used.update(a.candidates)
        for inc in self.incidents:
            used.update(inc.tool_call_ids)
        return CorrelationReport(
            generated_at=self.generated_at,
            skew_s=self.skew_s,
            logs=[_stats_out(s) for s in self.log_stats],
            traces=[_stats_out(s) for s in self.traces.stats],
            tool_calls=len(self.traces.calls),
            records=self.record_count,
            attributed=self.attributed.num_rows,
            attributions=self.attributions,
            unattributed=self.unattributed,
            incidents=self.incidents,
            calls={k: v for k, v in self.calls_by_id.items() if k in used},
        )


def correlate(
    traces: Iterable[Path | str] | TraceSet,
    logs: Iterable[Path | str],
    skew_s: float = 2.0,
    *,
    formats: Mapping[str, LogReader] | None = None,
    otel_mapping: Mapping[str, str] | None = None,
    include_allowed: bool = False,
) -> CorrelationResult:
    """Attribute every record of ``logs`` to the tool calls in ``traces`` that can have caused it.

    ``skew_s`` is the largest clock difference assumed between the log sources
    and the trace. ``formats`` maps a log path (as given) to a reader, for files
    whose format cannot be detected (custom AWS fields without header, generic
    CSV). Incidents are built from denied and alerting records (and from every
    attributed record when ``include_allowed``), plus Corral's own alerts.
    """
    if skew_s < 0:
        raise InputError(f"clock skew must be >= 0, got {skew_s}")
    ts = traces if isinstance(traces, TraceSet) else load_traces(traces, otel_mapping)
    fm = {str(k): v for k, v in (formats or {}).items()}
    records, stats = read_logs([Path(p) for p in logs], lambda p: fm.get(str(p)))
    return correlate_tables(ts, records, stats, skew_s, include_allowed=include_allowed)


def correlate_tables(
    ts: TraceSet,
    records: pa.Table,
    stats: list[ReadStats],
    skew_s: float,
    *,
    include_allowed: bool = False,
) -> CorrelationResult:
    """The attribution step alone, over records already read (``RECORD_SCHEMA``)."""
    con = duckdb.connect()
    con.execute("SET threads TO 1")
    calls = ts.calls_table()
    egress = pa.table(
        {
            "tool_call_id": [e.tool_call_id for e in ts.egress],
            "time": [e.time for e in ts.egress],
            "src_ip": [e.src_ip for e in ts.egress],
            "src_port": [e.src_port for e in ts.egress],
            "dst_ip": [e.dst_ip for e in ts.egress],
            "dst_port": [e.dst_port for e in ts.egress],
            "proto": [e.proto for e in ts.egress],
        },
        schema=EGRESS_SCHEMA,
    )
    records = records.cast(RECORD_SCHEMA)
    by_record = attribute(records, calls, egress, skew_s, con).sort_by("rid")
    con.close()
    rids = by_record.column("rid")
    attributed = records.take(rids)
    for name in by_record.column_names:
        if name != "rid":
            attributed = attributed.append_column(name, by_record.column(name))
    unattributed = records
    if by_record.num_rows:
        all_rids = pa.array(range(records.num_rows), pa.int64())
        unattributed = records.filter(pc.invert(pc.is_in(all_rids, value_set=rids.combine_chunks())))
    call_ids = calls.column("tool_call_id").to_pylist()
    return CorrelationResult(attributed, unattributed, ts, stats, skew_s, call_ids, include_allowed)


def _record_out(row: dict[str, Any]) -> LogRecordOut:
    return LogRecordOut(**_record_fields(row))


def _record_fields(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in _RECORD_COLS}
    out["log_file"] = out.pop("file")
    out["log_line"] = out.pop("line")
    out["time"] = out.pop("start")
    return out


def _attribution(row: dict[str, Any], candidates: list[str]) -> Attribution:
    side = row["local_side"]
    remote_ip = row["dst_ip"] if side == 0 else row["src_ip"]
    remote_port = row["dst_port"] if side == 0 else row["src_port"]
    local_ip = row["src_ip"] if side == 0 else row["dst_ip"]
    return Attribution(
        **_record_fields(row),
        run_id=row["run_id"],
        episode_id=row["episode_id"],
        step=row["step"],
        turn=row["turn"],
        tool_call_id=row["tool_call_id"],
        method=row["method"],
        confidence=round(float(row["confidence"]), 4),
        candidates=candidates,
        candidate_count=int(row["candidate_count"]),
        episode_count=int(row["episode_count"]),
        remote_ip=remote_ip,
        remote_port=remote_port,
        evidence=_evidence(row["method"], local_ip, int(row["candidate_count"]), int(row["episode_count"])),
    )


_EVIDENCE = {
    "egress_5tuple": "exact outside 5-tuple recorded by Corral's egress proxy for {who}",
    "conntrack_nat": "conntrack NAT entry maps node address {ip} back to the sandbox of {who}",
    "sandbox_ip_time": "sandbox address {ip} belonged to {who} at that time",
    "workload_time": "the log names the workload, the sandbox of {who}, at that time",
    "node_time_command": "node address {ip} ran {who} within the clock-skew window, whose command "
    "names the destination",
    "node_time": "node address {ip} ran {who} within the clock-skew window",
}
assert _EVIDENCE.keys() == METHODS.keys()


def _evidence(method: str, ip: str | None, n: int, episodes: int) -> str:
    if n == 1:
        who = "exactly one tool call"
    elif episodes == 1:
        who = f"{n} tool calls of one episode, which the evidence cannot tell apart"
    else:
        who = f"{n} concurrent tool calls in {episodes} episodes (ambiguous)"
    return _EVIDENCE[method].format(ip=ip, who=who)


def _stats_out(s: ReadStats) -> FileStatsOut:
    return FileStatsOut(
        file=s.file,
        format=s.format,
        records=s.records,
        malformed=s.malformed,
        samples=[SampleOut(line=m.line, text=m.text, reason=m.reason) for m in s.samples],
    )

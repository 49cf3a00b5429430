"""``correlate()``: read logs and traces, attribute records, group incidents."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from corral.correlate._attribute import EGRESS_SCHEMA, LINGER_S, attribute
from corral.correlate._evidence import evidence
from corral.correlate._flows import continue_flows
from corral.correlate._incidents import alert_out, build_incidents, is_violation
from corral.correlate._record import RECORD_SCHEMA, ReadStats
from corral.correlate._registry import LogReader, read_logs
from corral.correlate._result import (
    Attribution,
    CallOut,
    CorralAlertOut,
    CorrelationReport,
    EpisodeOut,
    FileStatsOut,
    Incident,
    LogRecordOut,
    ReportSummary,
    SampleOut,
)
from corral.correlate._traces import TraceSet, load_traces
from corral.errors import InputError
from corral.events import TraceRecord

_RECORD_COLS = ["file", "line", "format", "kind", "start", "end", "src_ip", "src_port", "dst_ip", "dst_port"]
_RECORD_COLS += ["proto", "action", "signature", "severity", "reporter", "detail", "workload"]
ROW_RECORD_COLS = _RECORD_COLS  # the record columns an attribution shows
ATT_COLS = ["rid", "method", "confidence", "candidate_count", "episode_count", "local_side", "candidate_cids"]
ATT_COLS += ["tool_call_id", "run_id", "episode_id", "step", "turn", "timing", "tie_break", "ruled_out"]
ATT_COLS += ["via_rid", "via_method"]


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
            attribution_of(row, [ids[c] for c in row["candidate_cids"]])
            for row in self.attributed.to_pylist()
        ]

    @cached_property
    def unattributed(self) -> list[LogRecordOut]:
        return [LogRecordOut(**_record_fields(row)) for row in self.unattributed_table.to_pylist()]

    @cached_property
    def calls_by_id(self) -> dict[str, TraceRecord]:
        return {c.tool_call_id: c for c in self.traces.calls}

    @cached_property
    def incidents(self) -> list[Incident]:
        return build_incidents(
            self.attributions, self.calls_by_id, self.traces.alerts, self.include_allowed, self.traces.info
        )

    def report(self) -> CorrelationReport:
        """The exportable form; ``calls`` holds every call an attribution, incident or episode names."""
        incidents = self.incidents
        episodes = self._episodes(incidents)
        ep_ref = {(e.run_id, e.episode_id): e.id for e in episodes}
        incidents = [
            inc.model_copy(update={"episode_ref": ep_ref.get((inc.run_id, inc.episode_id))})
            if not inc.ambiguous
            else inc
            for inc in incidents
        ]
        used: set[str] = set()
        for a in self.attributions:
            used.update(a.candidates)
        for inc in incidents:
            used.update(inc.tool_call_ids)
        for ep in episodes:
            used.update(ep.call_ids)
            used.update(ep.trusted_call_ids)
        alerts_by_call: dict[str, list[CorralAlertOut]] = defaultdict(list)
        for al in self.traces.alerts:
            if al.tool_call_id in used:
                alerts_by_call[al.tool_call_id].append(alert_out(al))
        calls = {
            k: _call_out(v, self.traces.info.get(k), alerts_by_call.get(k, []))
            for k, v in self.calls_by_id.items()
            if k in used
        }
        return CorrelationReport(
            generated_at=self.generated_at,
            skew_s=self.skew_s,
            logs=[stats_out(s) for s in self.log_stats],
            traces=[stats_out(s) for s in self.traces.stats],
            tool_calls=len(self.traces.calls),
            records=self.record_count,
            attributed=self.attributed.num_rows,
            attributions=self.attributions,
            unattributed=self.unattributed,
            incidents=incidents,
            calls=calls,
            summary=self._summary(incidents),
            episodes=episodes,
        )

    def _summary(self, incidents: list[Incident]) -> ReportSummary:
        info = self.traces.info
        trusted = sum(1 for c in self.traces.calls if (i := info.get(c.tool_call_id)) and i.trusted)
        blocked = sum(1 for c in self.traces.calls if (i := info.get(c.tool_call_id)) and i.blocked)
        return ReportSummary(
            records=self.record_count,
            attributed=self.attributed.num_rows,
            ambiguous=sum(1 for a in self.attributions if a.candidate_count > 1),
            unattributed=self.unattributed_table.num_rows,
            violations=sum(1 for a in self.attributions if is_violation(a)),
            malformed_lines=sum(s.malformed for s in [*self.log_stats, *self.traces.stats]),
            ignored_lines=sum(s.ignored for s in self.log_stats),
            agent_calls=len(self.traces.calls) - trusted,
            trusted_calls=trusted,
            calls_blocked=blocked,
            incidents=len(incidents),
            incidents_ambiguous=sum(1 for i in incidents if i.ambiguous),
            call_sources=self.traces.sources,
        )

    def _episodes(self, incidents: list[Incident]) -> list[EpisodeOut]:
        """Every episode a certain incident names, with all of its calls in order."""
        wanted = {(i.run_id, i.episode_id): i.id for i in incidents if not i.ambiguous}
        if not wanted:
            return []
        by_ep: dict[tuple[str | None, str | None], list[TraceRecord]] = defaultdict(list)
        for c in self.traces.calls:
            if (c.run_id, c.episode_id) in wanted:
                by_ep[(c.run_id, c.episode_id)].append(c)
        info = self.traces.info
        out: list[EpisodeOut] = []
        for n, inc in enumerate(i for i in incidents if not i.ambiguous):
            key = (inc.run_id, inc.episode_id)
            ordered = sorted(by_ep.get(key, []), key=lambda c: (c.start, c.turn or 0, c.tool_call_id))
            trusted = {c.tool_call_id for c in ordered if (i := info.get(c.tool_call_id)) and i.trusted}
            out.append(
                EpisodeOut(
                    id=f"EP-{n + 1:04d}",
                    run_id=inc.run_id,
                    episode_id=inc.episode_id,
                    call_ids=[c.tool_call_id for c in ordered if c.tool_call_id not in trusted],
                    trusted_call_ids=[c.tool_call_id for c in ordered if c.tool_call_id in trusted],
                    incident_ids=[inc.id],
                    violations=inc.record_count,
                    alerts=len(inc.alerts),
                )
            )
        return out


def correlate(
    traces: Iterable[Path | str] | TraceSet,
    logs: Iterable[Path | str],
    skew_s: float = 2.0,
    *,
    formats: Mapping[str, LogReader] | None = None,
    otel_mapping: Mapping[str, str] | None = None,
    include_allowed: bool = False,
    linger_s: float = LINGER_S,
) -> CorrelationResult:
    """Attribute every record of ``logs`` to the tool calls in ``traces`` that can have caused it.

    ``skew_s`` is the largest clock difference assumed between the log sources
    and the trace; ``linger_s`` how long after a call a process it left running
    is still looked for. ``formats`` maps a log path (as given) to a reader, for
    files whose format cannot be detected (custom AWS fields without header,
    generic CSV). Incidents are built from denied and alerting records (and from
    every attributed record when ``include_allowed``), plus Corral's own alerts.
    A trace source with no usable tool call (a log given as a trace) is an
    ``InputError``.
    """
    if skew_s < 0:
        raise InputError(f"clock skew must be >= 0, got {skew_s}")
    ts = traces if isinstance(traces, TraceSet) else load_traces(traces, otel_mapping, require_calls=True)
    fm = {str(k): v for k, v in (formats or {}).items()}
    records, stats = read_logs([Path(p) for p in logs], lambda p: fm.get(str(p)))
    return correlate_tables(ts, records, stats, skew_s, include_allowed=include_allowed, linger_s=linger_s)


def egress_table(ts: TraceSet) -> pa.Table:
    return pa.table(
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


def attribute_records(
    records: pa.Table,
    calls: pa.Table,
    refs: pa.Table | None,
    egress: pa.Table,
    skew_s: float,
    linger_s: float = LINGER_S,
) -> pa.Table:
    """Attribution columns (``ATT_COLS``) for each attributed record, by ``rid`` (its row index)."""
    con = duckdb.connect()
    try:
        con.execute("SET threads TO 1")
        attribute(records, calls, egress, skew_s, con, refs=refs, linger_s=linger_s)
        continue_flows(con)
        return con.sql(f"SELECT {', '.join(ATT_COLS)} FROM att ORDER BY rid").to_arrow_table()
    finally:
        con.close()


def correlate_tables(
    ts: TraceSet,
    records: pa.Table,
    stats: list[ReadStats],
    skew_s: float,
    *,
    include_allowed: bool = False,
    linger_s: float = LINGER_S,
) -> CorrelationResult:
    """The attribution step alone, over records already read (``RECORD_SCHEMA``)."""
    calls = ts.calls_table()
    records = records.cast(RECORD_SCHEMA)
    by_record = attribute_records(records, calls, ts.refs_table(), egress_table(ts), skew_s, linger_s)
    attributed = join_attribution(records, by_record)
    unattributed = records
    if by_record.num_rows:
        all_rids = pa.array(range(records.num_rows), pa.int64())
        rids = by_record.column("rid").combine_chunks()
        unattributed = records.filter(pc.invert(pc.is_in(all_rids, value_set=rids)))
    call_ids = calls.column("tool_call_id").to_pylist()
    return CorrelationResult(attributed, unattributed, ts, stats, skew_s, call_ids, include_allowed)


def join_attribution(records: pa.Table, by_record: pa.Table) -> pa.Table:
    """The attributed records' columns with their attribution columns (``via`` as file:line)."""
    rids = by_record.column("rid")
    attributed = records.take(rids)
    for name in by_record.column_names:
        if name not in ("rid", "via_rid"):
            attributed = attributed.append_column(name, by_record.column(name))
    via = by_record.column("via_rid").to_pylist()
    files, lines = records.column("file").to_pylist(), records.column("line").to_pylist()
    cont = [None if v is None else f"{files[v]}:{lines[v]}" for v in via]
    return attributed.append_column("continues", pa.array(cont, pa.string()))


def _record_fields(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in _RECORD_COLS}
    out["log_file"] = out.pop("file")
    out["log_line"] = out.pop("line")
    out["time"] = out.pop("start")
    return out


def attribution_of(row: dict[str, Any], candidates: list[str]) -> Attribution:
    """The typed attribution of one row of an attributed table."""
    side = row["local_side"]
    remote_ip = row["dst_ip"] if side == 0 else row["src_ip"]
    remote_port = row["dst_port"] if side == 0 else row["src_port"]
    local_ip = row["src_ip"] if side == 0 else row["dst_ip"]
    n, episodes = int(row["candidate_count"]), int(row["episode_count"])
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
        candidate_count=n,
        episode_count=episodes,
        remote_ip=remote_ip,
        remote_port=remote_port,
        evidence=evidence(row, local_ip, remote_ip, remote_port, n, episodes),
        timing=row["timing"],
        tie_break=row["tie_break"],
        ruled_out=int(row["ruled_out"] or 0),
        continues=row["continues"],
    )


attribution_of_row = attribution_of


def stats_out(s: ReadStats) -> FileStatsOut:
    return FileStatsOut(
        file=s.file,
        format=s.format,
        records=s.records,
        malformed=s.malformed,
        samples=[SampleOut(line=m.line, text=m.text, reason=m.reason) for m in s.samples],
        ignored=s.ignored,
        reasons=dict(s.reasons),
    )


def _call_out(c: TraceRecord, info: Any, alerts: list[CorralAlertOut]) -> CallOut:
    extra: dict[str, Any] = {}
    if info is not None:
        extra = dict(
            source=info.source,
            blocked=info.blocked,
            exit_code=info.exit_code,
            stop_reason=info.stop_reason,
            stdout=info.stdout,
            stderr=info.stderr,
            trusted=info.trusted,
        )
    return CallOut(**c.model_dump(), **extra, alerts=alerts)

"""Trace sources: RL traces of every supported kind as one ``TraceSet`` of tool calls.

Sources, detected from content: Corral's event store (SQLite) with its egress
records, alerts and each call's outcome and output; generic trace JSON lines
(DESIGN.md contract); ROLL rollout dumps (``rollout_dump_data.step_N.jsonl``);
OpenTelemetry spans in OTLP JSON, with a configurable attribute mapping. A call
reported by two sources (the store and the trace written from it) counts once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from corral.correlate._attribute import calls_table, refs_table
from corral.correlate._lines import head_lines
from corral.correlate._record import ReadStats
from corral.correlate._registry import sniff_format
from corral.correlate._tracefiles import (
    MAX_OUTPUT,
    ROLL_NAME,
    TRACE_ERRORS,
    Call,
    CallInfo,
    checked_call,
    read_trace_file,
)
from corral.errors import CorralError, InputError
from corral.events import Alert, Event, EventStore, NetworkConnection, ToolCall, TraceRecord, trace_record

STORE_TYPES = ("tool_call", "network_connection", "alert")
_POLL_ERRORS: tuple[type[BaseException], ...] = (*TRACE_ERRORS, CorralError)


@dataclass(frozen=True)
class EgressRecord:
    """The outside 5-tuple Corral's egress proxy used for one connection of one tool call."""

    tool_call_id: str
    time: float
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    proto: str
    decision: str


@dataclass(frozen=True)
class StoreAlert:
    """A detection Corral raised itself, to be shown with the incident of its episode."""

    time: float
    run_id: str | None
    episode_id: str | None
    step: int | None
    turn: int | None
    tool_call_id: str | None
    rule_id: str
    title: str
    level: str


@dataclass
class TraceSet:
    """Everything read from the traces: tool calls, egress tuples, Corral's own alerts.

    ``info`` holds, per tool call id, what the source says beyond the generic
    record (blocked or ran, exit code, captured output, trusted grader run).
    """

    calls: list[TraceRecord] = field(default_factory=list)
    egress: list[EgressRecord] = field(default_factory=list)
    alerts: list[StoreAlert] = field(default_factory=list)
    stats: list[ReadStats] = field(default_factory=list)
    info: dict[str, CallInfo] = field(default_factory=dict)
    _ids: set[tuple[str | None, str | None, str]] = field(default_factory=set, repr=False, compare=False)
    _table: pa.Table | None = field(default=None, repr=False, compare=False)
    _refs: pa.Table | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.calls and not self._ids:
            unique: list[TraceRecord] = []
            for c in self.calls:
                if _key(c) not in self._ids:
                    self._ids.add(_key(c))
                    unique.append(c)
            self.calls = unique

    def calls_table(self) -> pa.Table:
        """The calls as Arrow (built once, reused for every correlation over this set)."""
        if self._table is None or self._table.num_rows != len(self.calls):
            self._table = calls_table(self.calls)
            self._refs = None
        return self._table

    def refs_table(self) -> pa.Table:
        """What each call's command names (addresses, hosts, ports), by ``cid`` of ``calls_table``."""
        table = self.calls_table()
        if self._refs is None:
            self._refs = refs_table(table)
        return self._refs

    def add_calls(self, calls: Iterable[Call]) -> list[TraceRecord]:
        """Add calls not seen before (by tool call id); returns those added. Info merges either way."""
        added: list[TraceRecord] = []
        for rec, info in calls:
            if info is not None:
                old = self.info.get(rec.tool_call_id)
                self.info[rec.tool_call_id] = info if old is None or old.source != "event store" else old
            if _key(rec) in self._ids:
                continue
            self._ids.add(_key(rec))
            self.calls.append(rec)
            added.append(rec)
        if added:
            self._table = self._refs = None
        return added

    def extend(self, other: TraceSet) -> None:
        self.add_calls((c, other.info.get(c.tool_call_id)) for c in other.calls)
        for k, v in other.info.items():
            self.info.setdefault(k, v)
        self.egress += other.egress
        self.alerts += other.alerts
        self.stats += other.stats

    @property
    def sources(self) -> list[str]:
        """Where the calls came from, for the report: 'event store', 'trace file' ..."""
        kinds = {s.format for s in self.stats}
        out = []
        if "corral-store" in kinds:
            out.append("event store")
        if kinds - {"corral-store"}:
            out.append("trace file")
        return out


def _key(c: TraceRecord) -> tuple[str | None, str | None, str]:
    # Framework traces (ROLL) reuse ids like "call_0" in every trajectory: the episode is part of the key.
    return (c.run_id, c.episode_id, c.tool_call_id)


def load_traces(
    paths: Iterable[Path | str],
    otel_mapping: Mapping[str, str] | None = None,
    *,
    require_calls: bool = False,
) -> TraceSet:
    """Read every trace source, detecting its kind from its content and name.

    ``require_calls``: a source with no usable tool call is an ``InputError``
    (a log given as a trace, an empty or wholly malformed file).
    """
    out = TraceSet()
    for p in paths:
        ts = load_trace(Path(p), otel_mapping)
        if require_calls and not ts.calls:
            raise InputError(_no_calls(Path(p), ts.stats[0]))
        out.extend(ts)
    return out


def _no_calls(path: Path, stats: ReadStats) -> str:
    if stats.format != "corral-store":
        try:
            reader = sniff_format(head_lines(path))
        except OSError:
            reader = None
        if reader is not None and reader.name != "generic":
            return f"{path}: this is a log ({reader.title}), not a trace: give it with --log"
    if stats.malformed:
        first = stats.samples[0] if stats.samples else None
        where = f" (first: line {first.line}: {first.reason})" if first else ""
        return f"{path}: no usable tool call in this trace: {stats.malformed} malformed lines{where}"
    return f"{path}: no tool call in this trace"


def trace_kind(path: Path) -> str:
    """'store', 'roll', 'otlp' or 'jsonl'."""
    if not path.is_file():
        raise InputError(f"{path}: no such trace file")
    try:
        with path.open("rb") as f:
            if f.read(16) == b"SQLite format 3\x00":
                return "store"
        if ROLL_NAME.search(path.name):
            return "roll"
        head = "\n".join(head_lines(path, 50, 4096))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    if '"resourceSpans"' in head:
        return "otlp"
    if '"trajectory_data"' in head or '"env_info"' in head:
        return "roll"
    return "jsonl"


def load_trace(path: Path, otel_mapping: Mapping[str, str] | None = None) -> TraceSet:
    kind = trace_kind(path)
    if kind == "store":
        reader = StoreReader(path)
        try:
            return reader.poll()
        finally:
            reader.close()
    stats = ReadStats(file=str(path), format=f"trace-{kind}")
    try:
        calls = read_trace_file(path, kind, stats, otel_mapping)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    out = TraceSet(stats=[stats])
    out.add_calls(calls)
    stats.records = len(out.calls)
    return out


# -- Corral's event store --------------------------------------------------------------------


class StoreReader:
    """Tool calls, egress 5-tuples and alerts from Corral's event store, read incrementally.

    ``poll()`` returns what was committed since the last poll (everything on the
    first), so the same reader serves ``correlate`` and a ``Watcher`` following a
    live run. An event that cannot be decoded is counted as malformed and reading
    stops there until the next poll (the store is append-only: it stays bad).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stats = ReadStats(file=str(path), format="corral-store")
        self.last_seq = 0
        self._store = EventStore(path)
        self._stuck_at: int | None = None

    def poll(self) -> TraceSet:
        out = TraceSet(stats=[self.stats])
        calls: list[Call] = []
        try:
            for ev in self._store.query(type=list(STORE_TYPES), after_seq=self.last_seq):
                self._add(ev, calls, out)
                self.last_seq = ev.seq or self.last_seq
        except _POLL_ERRORS as exc:
            if self._stuck_at != self.last_seq:  # report a bad event once, not on every poll
                self._stuck_at = self.last_seq
                self.stats.bad(self.last_seq + 1, "", f"event after seq {self.last_seq}: {exc}"[:500])
        out.add_calls(calls)
        self.stats.records += len(out.calls)
        return out

    def _add(self, ev: Event, calls: list[Call], out: TraceSet) -> None:
        d = ev.data
        t = ev.time_ns / 1e9
        if isinstance(d, ToolCall):
            rec = trace_record(ev)
            if rec is None:
                return
            try:
                rec = checked_call(rec)
            except ValueError as exc:
                self.stats.bad(ev.seq or 0, d.command[:300], f"tool_call: {exc}")
                return
            calls.append((rec, _store_info(d)))
        elif isinstance(d, NetworkConnection):
            if d.outside_src_ip and d.outside_dst_ip and ev.ctx.tool_call_id:
                out.egress.append(
                    EgressRecord(
                        tool_call_id=ev.ctx.tool_call_id,
                        time=t,
                        src_ip=d.outside_src_ip,
                        src_port=d.outside_src_port or 0,
                        dst_ip=d.outside_dst_ip,
                        dst_port=d.outside_dst_port or 0,
                        proto=d.Protocol.lower(),
                        decision=d.decision,
                    )
                )
        elif isinstance(d, Alert):
            c = ev.ctx
            out.alerts.append(
                StoreAlert(
                    t, c.run_id, c.episode_id, c.step, c.turn, c.tool_call_id, d.rule_id, d.title, d.level
                )
            )

    def close(self) -> None:
        with contextlib.suppress(CorralError):  # nothing was written through this handle
            self._store.close()


def _store_info(d: ToolCall) -> CallInfo:
    # Captured output and the trusted flag arrive with newer tool_call events; older stores lack them.
    out, err = getattr(d, "stdout", None), getattr(d, "stderr", None)
    return CallInfo(
        source="event store",
        blocked=d.blocked,
        exit_code=d.exit_code,
        stop_reason=d.stop_reason,
        stdout=out[:MAX_OUTPUT] if isinstance(out, str) else None,
        stderr=err[:MAX_OUTPUT] if isinstance(err, str) else None,
        trusted=getattr(d, "trusted", False) is True,
    )

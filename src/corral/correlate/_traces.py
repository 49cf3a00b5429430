"""Trace readers: RL traces of every supported kind into the generic trace format.

Sources, detected from content: Corral's event store (SQLite) with its egress
records and alerts; generic trace JSON lines (DESIGN.md contract); ROLL rollout
dumps (``rollout_dump_data.step_N.jsonl``); OpenTelemetry spans in OTLP JSON,
with a configurable attribute mapping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from corral.correlate._attribute import calls_table
from corral.correlate._record import ReadStats, open_text, parse_time
from corral.errors import InputError
from corral.events import Alert, EventStore, NetworkConnection, TraceRecord, trace_records

_ROLL_NAME = re.compile(r"rollout_dump_data\.step_(\d+)\.jsonl(\.gz)?$")


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
    """Everything read from the traces: tool calls, egress tuples, Corral's own alerts."""

    calls: list[TraceRecord] = field(default_factory=list)
    egress: list[EgressRecord] = field(default_factory=list)
    alerts: list[StoreAlert] = field(default_factory=list)
    stats: list[ReadStats] = field(default_factory=list)
    _table: pa.Table | None = field(default=None, repr=False, compare=False)

    def calls_table(self) -> pa.Table:
        """The calls as Arrow (built once, reused for every correlation over this set)."""
        if self._table is None or self._table.num_rows != len(self.calls):
            self._table = calls_table(self.calls)
        return self._table

    def extend(self, other: TraceSet) -> None:
        self._table = None
        self.calls += other.calls
        self.egress += other.egress
        self.alerts += other.alerts
        self.stats += other.stats


def load_traces(paths: Iterable[Path | str], otel_mapping: Mapping[str, str] | None = None) -> TraceSet:
    """Read every trace source, detecting its kind from its content and name."""
    out = TraceSet()
    for p in paths:
        out.extend(load_trace(Path(p), otel_mapping))
    return out


def trace_kind(path: Path) -> str:
    """'store', 'roll', 'otlp' or 'jsonl'."""
    if not path.is_file():
        raise InputError(f"{path}: no such trace file")
    with path.open("rb") as f:
        if f.read(16) == b"SQLite format 3\x00":
            return "store"
    if _ROLL_NAME.search(path.name):
        return "roll"
    with open_text(path) as f:
        head = f.read(4096)
    if '"resourceSpans"' in head:
        return "otlp"
    if '"trajectory_data"' in head or '"env_info"' in head:
        return "roll"
    return "jsonl"


def load_trace(path: Path, otel_mapping: Mapping[str, str] | None = None) -> TraceSet:
    kind = trace_kind(path)
    if kind == "store":
        return read_store(path)
    stats = ReadStats(file=str(path), format=f"trace-{kind}")
    if kind == "roll":
        calls = list(read_roll_dump(path, stats))
    elif kind == "otlp":
        calls = list(read_otlp(path, stats, otel_mapping))
    else:
        calls = list(read_trace_jsonl(path, stats))
    stats.records = len(calls)
    return TraceSet(calls=calls, stats=[stats])


def _json_lines(path: Path, stats: ReadStats) -> Iterator[tuple[int, Any]]:
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except ValueError as exc:
                stats.bad(n, line, f"invalid JSON: {exc}")


def read_trace_jsonl(path: Path, stats: ReadStats) -> Iterator[TraceRecord]:
    """Generic trace records, one JSON object per line; start/end as epoch seconds or RFC 3339."""
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                # Fast path: epoch seconds validated straight from JSON by pydantic.
                rec = TraceRecord.model_validate_json(line)
                if rec.start < _EPOCH_S_MAX and rec.end < _EPOCH_S_MAX:
                    yield rec
                    continue
            except ValidationError:
                pass
            yield from _slow_trace_line(n, line, stats)


_EPOCH_S_MAX = 1e11  # larger values are milliseconds or finer: converted by parse_time


def _slow_trace_line(n: int, line: str, stats: ReadStats) -> Iterator[TraceRecord]:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        stats.bad(n, line.rstrip("\r\n"), f"invalid JSON: {exc}")
        return
    try:
        if not isinstance(obj, dict):
            raise ValueError("not an object")
        obj = dict(obj)
        for k in ("start", "end"):
            obj[k] = parse_time(obj.get(k))
        yield TraceRecord.model_validate(obj)
    except (ValidationError, ValueError, TypeError) as exc:
        stats.bad(n, line.rstrip("\r\n"), str(exc).splitlines()[0])


# -- Corral's event store --------------------------------------------------------------------


def read_store(path: Path) -> TraceSet:
    """Tool calls, egress 5-tuples and alerts from Corral's event store."""
    stats = ReadStats(file=str(path), format="corral-store")
    out = TraceSet(stats=[stats])
    store = EventStore(path)
    try:
        out.calls = list(trace_records(store))
        for ev in store.query(type=["network_connection", "alert"]):
            d = ev.data
            t = ev.time_ns / 1e9
            if isinstance(d, NetworkConnection):
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
    finally:
        store.close()
    stats.records = len(out.calls)
    return out


# -- ROLL rollout dumps ----------------------------------------------------------------------


def _rows(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """ROLL writes a batch as one object of equal-length columns; a row object is also accepted."""
    values = list(obj.values())
    if values and all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
        return [dict(zip(obj.keys(), row, strict=True)) for row in zip(*values, strict=True)]
    return [obj]


def _loads(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) and v[:1] in "{[" else v


def _find_time(d: Mapping[str, Any], word: str) -> float | None:
    for k, v in d.items():
        if word in k.lower() and isinstance(v, int | float | str):
            try:
                t = parse_time(v)
            except ValueError:
                continue
            if t is not None and t > 1e8:  # an absolute time, not a duration
                return t
    return None


def read_roll_dump(path: Path, stats: ReadStats) -> Iterator[TraceRecord]:
    """Tool calls from a ROLL agentic rollout dump.

    Each trajectory has ``trajectory_data`` (JSON) with ``trajectory_id``,
    ``env_info`` (``sandbox_id``, ``sandbox_ip``, host address) and
    ``timing_info``, plus ``messages`` whose assistant ``tool_calls`` are the
    calls. The dump has no per-call times, so every call of a trajectory spans
    the trajectory's window: attribution then names the episode for sure and
    lists its calls as candidates.
    """
    m = _ROLL_NAME.search(path.name)
    file_step = int(m.group(1)) if m else None
    for n, obj in _json_lines(path, stats):
        if not isinstance(obj, dict):
            stats.bad(n, str(obj)[:300], "not an object")
            continue
        for row in _rows(obj):
            try:
                yield from _roll_calls(row, file_step)
            except (ValueError, TypeError, KeyError, ValidationError) as exc:
                stats.bad(n, json.dumps(row)[:300], str(exc).splitlines()[0])


def _roll_calls(row: dict[str, Any], file_step: int | None) -> Iterator[TraceRecord]:
    traj = _loads(row.get("trajectory_data")) or {}
    if not isinstance(traj, dict):
        raise ValueError("trajectory_data is not an object")
    env = _loads(traj.get("env_info")) or {}
    timing = _loads(traj.get("timing_info")) or {}
    traj_id = str(traj.get("trajectory_id") or row.get("trajectory_id") or "")
    if not traj_id:
        raise ValueError("no trajectory_id")
    start = _find_time(timing, "start") or _find_time(env, "start")
    end = _find_time(timing, "end") or _find_time(env, "end")
    if start is None or end is None:
        raise ValueError(f"trajectory {traj_id}: no start/end time in timing_info")
    step = row.get("global_step", file_step)
    run_id = row.get("exp_name")
    host = env.get("host_ip") or env.get("node_ip") or env.get("host")
    messages = _loads(row.get("messages")) or []
    if messages and isinstance(messages[0], list):  # one list per trajectory
        messages = messages[0]
    turn = 0
    k = 0
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        turn += 1
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            args = _loads(fn.get("arguments"))
            command = args.get("command") or args.get("cmd") if isinstance(args, dict) else None
            k += 1
            yield TraceRecord(
                run_id=str(run_id) if run_id is not None else None,
                step=int(step) if step is not None else None,
                episode_id=traj_id,
                turn=turn,
                tool_call_id=str(call.get("id") or f"{traj_id}:{k}"),
                sandbox_id=env.get("sandbox_id"),
                host=host,
                sandbox_ip=env.get("sandbox_ip"),
                start=start,
                end=end,
                command=str(command if command is not None else fn.get("arguments", fn.get("name", ""))),
            )


# -- OpenTelemetry spans (OTLP JSON) ---------------------------------------------------------

DEFAULT_OTEL_MAPPING: dict[str, str] = {
    "run_id": "corral.run_id",
    "step": "corral.step",
    "episode_id": "corral.episode_id",
    "turn": "corral.turn",
    "tool_call_id": "corral.tool_call_id",
    "sandbox_id": "corral.sandbox_id",
    "host": "host.ip",
    "sandbox_ip": "corral.sandbox_ip",
    "command": "process.command_line",
}
_FALLBACK_KEYS = {
    "run_id": ("run_id", "rl.run_id"),
    "step": ("step", "rl.step", "global_step"),
    "episode_id": ("episode_id", "rl.episode_id", "trajectory_id"),
    "turn": ("turn", "rl.turn"),
    "tool_call_id": ("tool_call_id", "gen_ai.tool.call.id"),
    "sandbox_id": ("sandbox_id",),
    "host": ("net.host.ip", "host.name"),
    "sandbox_ip": ("sandbox_ip",),
    "command": ("command", "tool.command", "corral.command"),
}


def _attrs(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in items or []:
        v = a.get("value") or {}
        for key in ("stringValue", "intValue", "doubleValue", "boolValue"):
            if key in v:
                out[a["key"]] = v[key]
                break
    return out


def read_otlp(
    path: Path, stats: ReadStats, mapping: Mapping[str, str] | None = None
) -> Iterator[TraceRecord]:
    """Spans from OTLP JSON (one export request per line, or one document) that are tool calls.

    ``mapping`` names, per trace field, the span (or resource) attribute holding
    it; a span is a tool call when it has a command or a tool call id.
    """
    mp = {**DEFAULT_OTEL_MAPPING, **(mapping or {})}
    with open_text(path) as f:
        text = f.read(1)
    docs: Iterable[tuple[int, Any]]
    if text == "{":
        try:
            with open_text(path) as f:
                docs = [(1, json.load(f))]
        except ValueError:
            docs = _json_lines(path, stats)  # one request per line (collector file exporter)
    else:
        docs = _json_lines(path, stats)
    for n, doc in docs:
        for rs in doc.get("resourceSpans", []) if isinstance(doc, dict) else []:
            res = _attrs((rs.get("resource") or {}).get("attributes"))
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    a = {**res, **_attrs(span.get("attributes"))}

                    def get(name: str, a: dict[str, Any] = a) -> Any:
                        for key in (mp[name], *_FALLBACK_KEYS[name]):
                            if key in a:
                                return a[key]
                        return None

                    if get("command") is None and get("tool_call_id") is None:
                        continue
                    try:
                        yield TraceRecord(
                            run_id=_str(get("run_id")),
                            step=_int(get("step")),
                            episode_id=_str(get("episode_id")),
                            turn=_int(get("turn")),
                            tool_call_id=str(get("tool_call_id") or span["spanId"]),
                            sandbox_id=_str(get("sandbox_id")),
                            host=_str(get("host")),
                            sandbox_ip=_str(get("sandbox_ip")),
                            start=int(span["startTimeUnixNano"]) / 1e9,
                            end=int(span.get("endTimeUnixNano") or span["startTimeUnixNano"]) / 1e9,
                            command=str(get("command") or span.get("name", "")),
                        )
                    except (KeyError, ValueError, ValidationError) as exc:
                        stats.bad(n, json.dumps(span)[:300], str(exc).splitlines()[0])


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def _int(v: Any) -> int | None:
    return None if v is None else int(v)

"""Trace files: generic trace JSON lines, ROLL rollout dumps and OTLP spans, line by line.

Each kind has a ``TraceParser``: one line in, the tool calls it holds out, so the
same code reads a finished file and follows one that grows. Every failure of a
hostile line (bad JSON, deep nesting, a 400-digit time, a list where a string
goes) makes that line malformed; nothing else is raised.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from corral.correlate._lines import ByteSource, iter_lines
from corral.correlate._record import MAX_EPOCH_S, ReadStats, parse_time
from corral.correlate._registry import PARSE_ERRORS, load_json, why
from corral.events import TraceRecord

ROLL_NAME = re.compile(r"rollout_dump_data\.step_(\d+)\.jsonl(\.gz)?$")
MAX_COMMAND = 1 << 16  # longer commands are cut for attribution and reports
MAX_OUTPUT = 16 << 10  # captured output kept per stream, for the report
TRACE_ERRORS: tuple[type[BaseException], ...] = (*PARSE_ERRORS, ValidationError)


@dataclass(frozen=True)
class CallInfo:
    """What a trace says about a call beyond the generic record: outcome, output, trust.

    ``blocked`` is None when the source does not say (a generic trace file may not).
    ``trusted`` marks the environment's own runs (a grader), not the agent's calls.
    """

    source: str  # "event store" or "trace file"
    blocked: bool | None = None
    exit_code: int | None = None
    stop_reason: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    trusted: bool = False


Call = tuple[TraceRecord, CallInfo | None]


def checked_call(rec: TraceRecord) -> TraceRecord:
    """The record, or ValueError when its times are not times; over-long commands are cut."""
    for name in ("start", "end"):
        t = getattr(rec, name)
        if not (math.isfinite(t) and 0.0 <= t <= MAX_EPOCH_S):
            raise ValueError(f"{name}: time out of range: {t!r}")
    if rec.end < rec.start:
        raise ValueError(f"end: before start ({rec.end} < {rec.start})")
    if not rec.tool_call_id:
        raise ValueError("tool_call_id: empty")
    if len(rec.command) > MAX_COMMAND:
        rec = rec.model_copy(update={"command": rec.command[:MAX_COMMAND]})
    return rec


def _text(v: Any) -> str | None:
    return v[:MAX_OUTPUT] if isinstance(v, str) else None


def info_from(obj: Mapping[str, Any], source: str) -> CallInfo | None:
    """Outcome fields a trace line may carry beside the generic ones (Corral writes them)."""
    keys = ("blocked", "exit_code", "stop_reason", "stdout", "stderr", "trusted", "role")
    if not any(k in obj for k in keys):
        return None
    blocked = obj.get("blocked")
    code = obj.get("exit_code")
    return CallInfo(
        source=source,
        blocked=blocked if isinstance(blocked, bool) else None,
        exit_code=code
        if isinstance(code, int) and not isinstance(code, bool) and -256 < code < 512
        else None,
        stop_reason=_text(obj.get("stop_reason")),
        stdout=_text(obj.get("stdout")),
        stderr=_text(obj.get("stderr")),
        trusted=obj.get("trusted") is True or obj.get("role") in ("grader", "trusted"),
    )


class TraceParser(ABC):
    """One line of a trace file in, its tool calls out; raises ``TRACE_ERRORS`` when malformed."""

    kind: str

    @abstractmethod
    def parse(self, text: str, line: int) -> list[Call]: ...


class GenericTraceParser(TraceParser):
    """Generic trace records (DESIGN.md), start/end as epoch seconds or RFC 3339."""

    kind = "jsonl"

    def parse(self, text: str, line: int) -> list[Call]:
        try:
            # Fast path: epoch seconds validated straight from JSON by pydantic.
            rec = TraceRecord.model_validate_json(text)
            if rec.start < _EPOCH_S_MAX and rec.end < _EPOCH_S_MAX and not _has_info(text):
                return [(checked_call(rec), None)]
        except ValidationError:
            pass
        obj = load_json(text)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        obj = dict(obj)
        for k in ("start", "end"):
            obj[k] = parse_time(obj.get(k))
        return [(checked_call(TraceRecord.model_validate(obj)), info_from(obj, "trace file"))]


_EPOCH_S_MAX = 1e11  # larger values are milliseconds or finer: converted by parse_time
_INFO_KEYS = ('"blocked"', '"stdout"', '"exit_code"', '"trusted"', '"role"')


def _has_info(text: str) -> bool:
    return any(k in text for k in _INFO_KEYS)


# -- ROLL rollout dumps ----------------------------------------------------------------------


def _rows(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """ROLL writes a batch as one object of equal-length columns; a row object is also accepted."""
    values = list(obj.values())
    if values and all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
        return [dict(zip(obj.keys(), row, strict=True)) for row in zip(*values, strict=True)]
    return [obj]


def _loads(v: Any) -> Any:
    return load_json(v) if isinstance(v, str) and v[:1] in "{[" else v


def _find_time(d: Any, word: str) -> float | None:
    if not isinstance(d, dict):
        return None
    for k, v in d.items():
        if isinstance(k, str) and word in k.lower() and isinstance(v, int | float | str):
            try:
                t = parse_time(v)
            except ValueError:
                continue
            if t is not None and t > 1e8:  # an absolute time, not a duration
                return t
    return None


class RollDumpParser(TraceParser):
    """Tool calls from a ROLL agentic rollout dump.

    Each trajectory has ``trajectory_data`` (JSON) with ``trajectory_id``,
    ``env_info`` (``sandbox_id``, ``sandbox_ip``, host address) and
    ``timing_info``, plus ``messages`` whose assistant ``tool_calls`` are the
    calls. The dump has no per-call times, so every call of a trajectory spans
    the trajectory's window: attribution then names the episode for sure and
    lists its calls as candidates.
    """

    kind = "roll"

    def __init__(self, file_step: int | None, stats: ReadStats) -> None:
        self.file_step = file_step
        self.stats = stats

    def parse(self, text: str, line: int) -> list[Call]:
        obj = load_json(text)
        if not isinstance(obj, dict):
            raise ValueError("not an object")
        out: list[Call] = []
        for row in _rows(obj):
            try:
                out.extend((checked_call(c), None) for c in _roll_calls(row, self.file_step))
            except TRACE_ERRORS as exc:
                self.stats.bad(line, _sample(row), why(exc))
        return out


def _roll_calls(row: dict[str, Any], file_step: int | None) -> Iterator[TraceRecord]:
    traj = _loads(row.get("trajectory_data")) or {}
    if not isinstance(traj, dict):
        raise ValueError("trajectory_data is not an object")
    env = _loads(traj.get("env_info")) or {}
    timing = _loads(traj.get("timing_info")) or {}
    if not isinstance(env, dict):
        raise ValueError("env_info is not an object")
    traj_id = str(traj.get("trajectory_id") or row.get("trajectory_id") or "")[:200]
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
    if isinstance(messages, list) and messages and isinstance(messages[0], list):  # one list per trajectory
        messages = messages[0]
    if not isinstance(messages, list):
        raise ValueError("messages is not a list")
    turn = 0
    k = 0
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        turn += 1
        calls = msg.get("tool_calls") or []
        if not isinstance(calls, list):
            raise ValueError("tool_calls is not a list")
        for call in calls:
            if not isinstance(call, dict):
                raise ValueError("a tool call is not an object")
            fn = call.get("function") or {}
            if not isinstance(fn, dict):
                raise ValueError("a tool call's function is not an object")
            args = _loads(fn.get("arguments"))
            command = (args.get("command") or args.get("cmd")) if isinstance(args, dict) else None
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


def _sample(row: Any) -> str:
    try:
        return json.dumps(row)[:300]
    except (ValueError, TypeError, RecursionError):
        return repr(type(row))


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
    for a in items if isinstance(items, list) else []:
        if not isinstance(a, dict) or not isinstance(a.get("key"), str):
            continue
        v = a.get("value") or {}
        if not isinstance(v, dict):
            continue
        for key in ("stringValue", "intValue", "doubleValue", "boolValue"):
            if key in v:
                out[a["key"]] = v[key]
                break
    return out


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


class OtlpParser(TraceParser):
    """Spans from OTLP JSON export requests that are tool calls.

    ``mapping`` names, per trace field, the span (or resource) attribute holding
    it; a span is a tool call when it has a command or a tool call id.
    """

    kind = "otlp"

    def __init__(self, stats: ReadStats, mapping: Mapping[str, str] | None = None) -> None:
        self.stats = stats
        self.mp = {**DEFAULT_OTEL_MAPPING, **(mapping or {})}

    def parse(self, text: str, line: int) -> list[Call]:
        return self.parse_doc(load_json(text), line)

    def parse_doc(self, doc: Any, line: int) -> list[Call]:
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
            raise ValueError("not an OTLP export request (no resourceSpans)")
        out: list[Call] = []
        for rs in _list(doc["resourceSpans"]):
            if not isinstance(rs, dict):
                continue
            resource = rs.get("resource")
            res = _attrs(resource.get("attributes") if isinstance(resource, dict) else None)
            for ss in _list(rs.get("scopeSpans")):
                for span in _list(ss.get("spans") if isinstance(ss, dict) else None):
                    if not isinstance(span, dict):
                        continue
                    try:
                        call = self._span(span, res)
                    except TRACE_ERRORS as exc:
                        self.stats.bad(line, _sample(span), why(exc))
                        continue
                    if call is not None:
                        out.append((call, None))
        return out

    def _span(self, span: dict[str, Any], res: dict[str, Any]) -> TraceRecord | None:
        a = {**res, **_attrs(span.get("attributes"))}

        def get(name: str) -> Any:
            for key in (self.mp[name], *_FALLBACK_KEYS[name]):
                if key in a:
                    return a[key]
            return None

        if get("command") is None and get("tool_call_id") is None:
            return None
        return checked_call(
            TraceRecord(
                run_id=_str(get("run_id")),
                step=_int(get("step")),
                episode_id=_str(get("episode_id")),
                turn=_int(get("turn")),
                tool_call_id=str(get("tool_call_id") or span["spanId"]),
                sandbox_id=_str(get("sandbox_id")),
                host=_str(get("host")),
                sandbox_ip=_str(get("sandbox_ip")),
                start=_nanos(span["startTimeUnixNano"]),
                end=_nanos(span.get("endTimeUnixNano") or span["startTimeUnixNano"]),
                command=str(get("command") or span.get("name", "")),
            )
        )


def _nanos(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ValueError(f"not a time in nanoseconds: {type(v).__name__}")
    return int(str(v)[:24]) / 1e9


def _str(v: Any) -> str | None:
    return None if v is None else str(v)[:1000]


def _int(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ValueError(f"not an integer: {type(v).__name__}")
    return int(str(v)[:20])


# -- reading whole files ---------------------------------------------------------------------


def read_trace_file(
    path: Path, kind: str, stats: ReadStats, otel_mapping: Mapping[str, str] | None = None
) -> list[Call]:
    """Every tool call of a trace file of ``kind`` ('jsonl', 'roll' or 'otlp'); bad lines counted."""
    parser = make_trace_parser(path, kind, stats, otel_mapping)
    if isinstance(parser, OtlpParser):
        whole = _otlp_document(path, parser, stats)
        if whole is not None:
            return whole
    out: list[Call] = []
    for n, text in iter_lines(path, stats):
        if not text or text.isspace():
            continue
        try:
            out.extend(parser.parse(text, n))
        except TRACE_ERRORS as exc:
            stats.bad(n, text, why(exc))
    return out


def make_trace_parser(
    path: Path, kind: str, stats: ReadStats, otel_mapping: Mapping[str, str] | None = None
) -> TraceParser:
    if kind == "roll":
        m = ROLL_NAME.search(path.name)
        return RollDumpParser(int(m.group(1)) if m else None, stats)
    if kind == "otlp":
        return OtlpParser(stats, otel_mapping)
    return GenericTraceParser()


def _otlp_document(path: Path, parser: OtlpParser, stats: ReadStats) -> list[Call] | None:
    """The calls of an OTLP file that is one JSON document; None when it is one request per line."""
    with ByteSource(path) as src:
        data = src.read_all()
    if data is None or not data.lstrip().startswith(b"{"):
        return None  # too big for one document, or broken: read line by line (which reports it)
    try:
        doc = load_json(data.decode("utf-8", "replace"))
    except ValueError:
        return None  # several documents: the collector's file exporter writes one per line
    try:
        return parser.parse_doc(doc, 1)
    except TRACE_ERRORS as exc:
        stats.bad(1, "", why(exc))
        return []

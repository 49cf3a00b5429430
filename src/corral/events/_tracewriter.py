"""Tool calls in the generic trace format (DESIGN.md): one ``TraceRecord`` JSON line per call.

``trace_lines`` adds what the store knows of each call's outcome (``blocked``,
``exit_code``, ``stop_reason``, ``trusted``) as extra keys, which the trace readers
(``corral correlate --trace``) take as the call's status.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING

from corral.events._model import Event, ToolCall
from corral.events._trace import TraceRecord

if TYPE_CHECKING:
    from corral.events._store import EventStore

_NS = 1_000_000_000


def trace_record(event: Event) -> TraceRecord | None:
    """The trace record of a ``tool_call`` event (None for other types or without a tool call id)."""
    d = event.data
    if not isinstance(d, ToolCall) or event.ctx.tool_call_id is None:
        return None
    c = event.ctx
    return TraceRecord(
        run_id=c.run_id,
        step=c.step,
        episode_id=c.episode_id,
        turn=c.turn,
        tool_call_id=c.tool_call_id,
        sandbox_id=event.sandbox_id,
        host=d.host_ip or event.host,
        sandbox_ip=d.sandbox_ip,
        start=d.start_ns / _NS,
        end=(d.end_ns if d.end_ns is not None else event.time_ns) / _NS,
        command=d.command,
    )


def trace_records(
    store: EventStore,
    *,
    run_id: str | None = None,
    episode_id: str | None = None,
    sandbox_id: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> Iterator[TraceRecord]:
    """Every committed tool call matching the filters as a trace record, in store order."""
    events = store.query(
        run_id=run_id,
        episode_id=episode_id,
        sandbox_id=sandbox_id,
        type="tool_call",
        since_ns=since_ns,
        until_ns=until_ns,
    )
    for e in events:
        rec = trace_record(e)
        if rec is not None:
            yield rec


def call_outcome(event: Event) -> dict[str, object]:
    """The outcome keys of a ``tool_call`` event's trace line (empty for other events)."""
    d = event.data
    if not isinstance(d, ToolCall):
        return {}
    return {
        "blocked": d.blocked,
        "exit_code": d.exit_code,
        "stop_reason": d.stop_reason,
        "trusted": d.trusted,
    }


def trace_lines(store: EventStore, *, run_id: str | None = None) -> Iterator[str]:
    """Each committed tool call of ``run_id`` as a trace line with its outcome keys, in store order."""
    for e in store.query(run_id=run_id, type="tool_call"):
        rec = trace_record(e)
        if rec is not None:
            yield json.dumps({**rec.model_dump(mode="json"), **call_outcome(e)})


def write_trace_jsonl(records: Iterable[TraceRecord | str], out: IO[str]) -> int:
    """Write trace records (or lines from ``trace_lines``) as JSON lines; returns the count."""
    n = 0
    for rec in records:
        out.write(rec if isinstance(rec, str) else rec.model_dump_json())
        out.write("\n")
        n += 1
    return n

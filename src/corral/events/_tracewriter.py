"""Tool calls in the generic trace format (DESIGN.md): one ``TraceRecord`` JSON line per call."""

from __future__ import annotations

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


def write_trace_jsonl(records: Iterable[TraceRecord], out: IO[str]) -> int:
    """Write trace records as JSON lines; returns the count."""
    n = 0
    for rec in records:
        out.write(rec.model_dump_json())
        out.write("\n")
        n += 1
    return n

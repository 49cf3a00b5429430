"""The SQLite schema of the event store and the conversion between rows and events.

The envelope has typed, indexed columns; the payload is the JSON of the event's
own model. Triggers make the table append-only: an UPDATE or DELETE fails.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from corral.events._model import Event, Payload
from corral.events._trace import TraceContext

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY,
    time_ns      INTEGER NOT NULL,
    type         TEXT NOT NULL,
    host         TEXT,
    sandbox_id   TEXT,
    run_id       TEXT,
    step         INTEGER,
    episode_id   TEXT,
    turn         INTEGER,
    tool_call_id TEXT,
    data         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events(time_ns);
CREATE INDEX IF NOT EXISTS events_sandbox ON events(sandbox_id, seq);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, episode_id, seq);
CREATE INDEX IF NOT EXISTS events_call ON events(tool_call_id);
CREATE INDEX IF NOT EXISTS events_type ON events(type, seq);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the event store is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event store is append-only'); END;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

INSERT = (
    "INSERT INTO events (time_ns, type, host, sandbox_id, run_id, step, episode_id, turn, tool_call_id, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

COLUMNS = "seq, time_ns, type, host, sandbox_id, run_id, step, episode_id, turn, tool_call_id, data"

Row = tuple[Any, ...]

_payload: TypeAdapter[Payload] = TypeAdapter(Payload)


def to_row(event: Event) -> Row:
    c = event.ctx
    return (
        event.time_ns,
        event.data.kind,
        event.host,
        event.sandbox_id,
        c.run_id,
        c.step,
        c.episode_id,
        c.turn,
        c.tool_call_id,
        event.data.model_dump_json(),
    )


def from_row(row: Row) -> Event:
    seq, time_ns, _type, host, sandbox_id, run_id, step, episode_id, turn, tool_call_id, data = row
    ctx = TraceContext(run_id=run_id, step=step, episode_id=episode_id, turn=turn, tool_call_id=tool_call_id)
    return Event(
        seq=seq,
        time_ns=time_ns,
        host=host,
        sandbox_id=sandbox_id,
        ctx=ctx,
        data=_payload.validate_json(data),
    )

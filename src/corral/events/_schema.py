"""The SQLite schema of the event store and the conversion between rows and events.

The envelope has typed, indexed columns; the payload is the JSON of the event's
own model. Triggers make the table append-only: an UPDATE or DELETE fails.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic_core import PydanticSerializationError

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

# Built on first read, so importing the events layer does not build every payload's validator.
_payload: TypeAdapter[Payload] = TypeAdapter(Payload, config=ConfigDict(defer_build=True))


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
        payload_json(event.data),
    )


def payload_json(data: BaseModel, exclude: set[str] | None = None) -> str:
    """The payload as JSON text that is always valid UTF-8, whatever a producer put in it.

    The fast path is pydantic's serialiser. It refuses lone surrogates (argv bytes that were not
    UTF-8, decoded with ``surrogateescape``), non-UTF-8 ``bytes`` and unknown objects; a store
    writer that raised on them would fail the whole store because of one agent's command, so
    those values are kept as text instead: undecodable bytes as ``\\xNN``, objects as ``repr``.
    """
    try:
        return data.model_dump_json(exclude=exclude)
    except PydanticSerializationError:
        clean = _scrub(data.model_dump(mode="python", exclude=exclude))
        return json.dumps(clean, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        raw = value.encode("utf-8", "surrogateescape")  # back to the bytes the producer decoded
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


def _scrub(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str | bytes):
        return _text(value)
    if isinstance(value, int):
        # JSON readers (and Python's own int-to-text limit) choke on huge integers.
        return value if -(2**63) <= value < 2**63 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {
            _text(k) if isinstance(k, str | bytes) else _text(repr(k)): _scrub(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    try:
        return _text(repr(value))
    except Exception:  # a __repr__ that raises must not stop the store
        return f"<{type(value).__name__}>"


def from_row(row: Row, data: Payload | None = None) -> Event:
    """The event in a row; ``data`` replaces the payload column (for a row that cannot be read)."""
    seq, time_ns, _type, host, sandbox_id, run_id, step, episode_id, turn, tool_call_id, raw = row
    ctx = TraceContext(run_id=run_id, step=step, episode_id=episode_id, turn=turn, tool_call_id=tool_call_id)
    return Event(
        seq=seq,
        time_ns=time_ns,
        host=host,
        sandbox_id=sandbox_id,
        ctx=ctx,
        data=data if data is not None else _payload.validate_json(raw),
    )

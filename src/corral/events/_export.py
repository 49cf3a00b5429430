"""Exporters: JSON lines (``Event.flat()``), Parquet and OCSF-shaped JSON lines.

Each writer takes any iterable of events (usually ``store.query(...)``), streams
it, and returns how many events it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from corral.errors import InputError, StoreError
from corral.events._model import Event
from corral.events._ocsf import to_ocsf
from corral.events._schema import payload_json

ExportFormat = Literal["jsonl", "parquet", "ocsf"]
EXPORT_FORMATS: tuple[str, ...] = ("jsonl", "parquet", "ocsf")

_PARQUET_BATCH = 10_000


def _write_lines(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for rec in records:
        out.write(json.dumps(rec, separators=(",", ":"), ensure_ascii=False))
        out.write("\n")
        n += 1
    return n


def write_jsonl(events: Iterable[Event], out: IO[str]) -> int:
    """One ``Event.flat()`` JSON object per line (the ``corral events --json`` format)."""
    return _write_lines((e.flat() for e in events), out)


def write_ocsf(events: Iterable[Event], out: IO[str]) -> int:
    """One OCSF-shaped JSON object per line."""
    return _write_lines((to_ocsf(e) for e in events), out)


def _parquet_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("seq", pa.int64()),
            ("time", pa.timestamp("ns", tz="UTC")),
            ("type", pa.string()),
            ("host", pa.string()),
            ("sandbox_id", pa.string()),
            ("run_id", pa.string()),
            ("step", pa.int64()),
            ("episode_id", pa.string()),
            ("turn", pa.int64()),
            ("tool_call_id", pa.string()),
            ("data", pa.string()),  # the payload as JSON: payload shapes differ by type
        ]
    )


def _columns(batch: list[Event]) -> dict[str, list[Any]]:
    return {
        "seq": [e.seq for e in batch],
        "time": [e.time_ns for e in batch],
        "type": [e.type for e in batch],
        "host": [e.host for e in batch],
        "sandbox_id": [e.sandbox_id for e in batch],
        "run_id": [e.ctx.run_id for e in batch],
        "step": [e.ctx.step for e in batch],
        "episode_id": [e.ctx.episode_id for e in batch],
        "turn": [e.ctx.turn for e in batch],
        "tool_call_id": [e.ctx.tool_call_id for e in batch],
        "data": [payload_json(e.data, exclude={"kind"}) for e in batch],
    }


def _batches(events: Iterable[Event]) -> Iterator[list[Event]]:
    batch: list[Event] = []
    for e in events:
        batch.append(e)
        if len(batch) >= _PARQUET_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def write_parquet(events: Iterable[Event], path: str | Path) -> int:
    """A Parquet file with typed envelope columns and the payload as a JSON string column."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError as exc:
        raise InputError(f"Parquet export needs {exc.name}: pip install 'corral[correlate]'") from None

    schema = _parquet_schema()
    n = 0
    try:
        with pq.ParquetWriter(str(path), schema) as writer:
            for batch in _batches(events):
                writer.write_table(pa.Table.from_pydict(_columns(batch), schema=schema))
                n += len(batch)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc}") from exc
    return n


def export_events(events: Iterable[Event], fmt: str, path: str | Path) -> int:
    """Write events to ``path`` in one of ``EXPORT_FORMATS``; returns the count."""
    if fmt == "parquet":
        return write_parquet(events, path)
    writers: dict[str, Callable[[Iterable[Event], IO[str]], int]] = {"jsonl": write_jsonl, "ocsf": write_ocsf}
    if fmt not in writers:
        raise InputError(f"unknown export format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    try:
        with open(path, "w", encoding="utf-8") as out:
            return writers[fmt](events, out)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc}") from exc

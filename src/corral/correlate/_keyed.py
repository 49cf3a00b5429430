"""Readers for logs whose records are keyed rows: JSON lines, or CSV with a header line.

Log services (Alibaba Cloud SLS, SIEM exports, spreadsheets) export either form;
both stream row by row with their line numbers.
"""

from __future__ import annotations

import csv
import json
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from corral.correlate._record import LogRecord, ReadStats, open_text, records_to_batch
from corral.correlate._registry import BATCH_ROWS, LogReader, first_json


def head_keys(head: list[str]) -> tuple[set[str], dict[str, Any] | None]:
    """The field names of the first row (JSON keys or CSV header), and the JSON row if JSON."""
    obj = first_json(head)
    if obj is not None:
        return set(obj), obj
    if head and "," in head[0]:
        return {k.strip().strip('"') for k in next(csv.reader([head[0]]))}, None
    return set(), None


class KeyedReader(LogReader):
    """A format whose records are flat-ish keyed rows; subclasses map one row."""

    @abstractmethod
    def parse_row(self, row: dict[str, Any], line: int, src: str) -> Iterable[LogRecord]: ...

    def read(self, path: Path, stats: ReadStats) -> Iterator[pa.RecordBatch]:
        buf: list[LogRecord] = []
        for line, row, err in _rows(path):
            if err is not None:
                stats.bad(line, err[0], err[1])
                continue
            assert row is not None
            try:
                buf.extend(self.parse_row(row, line, str(path)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                stats.bad(line, json.dumps(row)[:300], f"{type(exc).__name__}: {exc}")
                continue
            if len(buf) >= BATCH_ROWS:
                stats.records += len(buf)
                yield records_to_batch(buf)
                buf = []
        if buf:
            stats.records += len(buf)
            yield records_to_batch(buf)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, tuple[str, str] | None]]:
    with open_text(path) as f:
        first, skipped = "", 0
        for first in f:
            if first.strip():
                break
            skipped += 1
        if first.lstrip().startswith("{"):
            yield from _json_rows(first, f, skipped)
            return
        f.seek(0)
        yield from _csv_rows(f)


def _json_rows(
    first: str, rest: Iterable[str], skipped: int
) -> Iterator[tuple[int, dict[str, Any] | None, Any]]:
    n = skipped
    for raw in _chain_first(first, rest):
        n += 1
        text = raw.strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            yield n, None, (text, f"invalid JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            yield n, None, (text, "not a JSON object")
            continue
        yield n, obj, None


def _chain_first(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest


def _csv_rows(f: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | None, Any]]:
    reader = csv.reader(f)
    header: list[str] | None = None
    for row in reader:
        if not row or not any(c.strip() for c in row):
            continue
        if header is None:
            header = [c.strip() for c in row]
            continue
        if len(row) != len(header):
            yield reader.line_num, None, (",".join(row), f"{len(row)} columns, header has {len(header)}")
            continue
        yield reader.line_num, dict(zip(header, row, strict=True)), None


def pick(row: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` present in ``row`` with a non-empty value (dotted names look inside)."""
    for name in names:
        cur: Any = row
        if name in row:
            cur = row[name]
        else:
            for part in name.split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
        if cur not in (None, "", "-"):
            return cur
    return None

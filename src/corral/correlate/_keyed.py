"""Readers for logs whose records are keyed rows: JSON lines, or CSV with a header line.

Log services (Alibaba Cloud SLS, SIEM exports, spreadsheets) export either form;
both stream row by row with their line numbers. CSV is parsed one physical line
at a time (flow exports have no quoted newlines), so a bad row never takes the
rows after it down with it.
"""

from __future__ import annotations

import csv
from abc import abstractmethod
from collections.abc import Iterable
from typing import Any

from corral.correlate._record import LogRecord
from corral.correlate._registry import LogReader, RecordParser, first_json, load_json


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

    def parser(self, src: str) -> RecordParser:
        return _KeyedParser(self, src)


class _KeyedParser(RecordParser):
    """JSON objects, or CSV rows under the header line; the first line decides which."""

    def __init__(self, reader: KeyedReader, src: str) -> None:
        self.reader = reader
        self.src = src
        self.json: bool | None = None
        self.header: list[str] | None = None

    def parse(self, text: str, line: int) -> list[LogRecord]:
        if self.json is None:
            self.json = text.lstrip().startswith("{")
        if self.json:
            obj = load_json(text)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            return list(self.reader.parse_row(obj, line, self.src))
        row = next(csv.reader([text]), [])
        if self.header is None:
            self.header = [c.strip() for c in row]
            return []
        if len(row) != len(self.header):
            raise ValueError(f"{len(row)} columns, header has {len(self.header)}")
        return list(self.reader.parse_row(dict(zip(self.header, row, strict=True)), line, self.src))


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

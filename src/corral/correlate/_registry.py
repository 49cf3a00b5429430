"""Log readers: the base classes, the explicit registry, and format detection.

A reader is named in data (``--format aws-vpc``), so names resolve through this
registry and an unknown name is a ``RegistryError``. Detection reads the first
lines of a file and asks each reader, most specific first, whether it is its
format. Readers stream: they yield Arrow batches and keep no more than one batch
in memory; a malformed line is counted in ``ReadStats`` and reading goes on.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pyarrow as pa

from corral.correlate._record import LogRecord, ReadStats, head_lines, open_text, records_to_batch
from corral.errors import InputError, RegistryError

BATCH_ROWS = 65536


class LogReader(ABC):
    """One log format: detects itself from content and streams normalised records."""

    name: ClassVar[str]
    title: ClassVar[str]
    # Lower is tried first during detection; generic readers go last.
    detect_order: ClassVar[int] = 50

    @abstractmethod
    def sniff(self, head: list[str]) -> bool:
        """True when the first non-empty lines of a file are in this format."""

    @abstractmethod
    def read(self, path: Path, stats: ReadStats) -> Iterator[pa.RecordBatch]:
        """Stream the file as batches of ``RECORD_SCHEMA``; count malformed lines in ``stats``."""


class LineReader(LogReader):
    """A format with one record (or none) per line; subclasses parse one line."""

    def new_state(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def parse_line(self, text: str, line: int, src: str, state: dict[str, Any]) -> Iterable[LogRecord]:
        """Records for one line (empty for headers/comments); raise ValueError etc. when malformed."""

    def read(self, path: Path, stats: ReadStats) -> Iterator[pa.RecordBatch]:
        src = str(path)
        state = self.new_state()
        buf: list[LogRecord] = []
        with open_text(path) as f:
            for n, raw in enumerate(f, 1):
                text = raw.rstrip("\r\n")
                if not text.strip():
                    continue
                try:
                    recs = list(self.parse_line(text, n, src, state))
                except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                    stats.bad(n, text, f"{type(exc).__name__}: {exc}")
                    continue
                buf.extend(recs)
                if len(buf) >= BATCH_ROWS:
                    stats.records += len(buf)
                    yield records_to_batch(buf)
                    buf = []
        if buf:
            stats.records += len(buf)
            yield records_to_batch(buf)


class JsonLineReader(LineReader):
    """One JSON object per line."""

    def parse_line(self, text: str, line: int, src: str, state: dict[str, Any]) -> Iterable[LogRecord]:
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        return self.parse_obj(obj, line, src)

    @abstractmethod
    def parse_obj(self, obj: dict[str, Any], line: int, src: str) -> Iterable[LogRecord]: ...


def first_json(head: list[str]) -> dict[str, Any] | None:
    """The first line that parses as a JSON object, if any."""
    for line in head[:5]:
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


_REGISTRY: dict[str, type[LogReader]] = {}
_R = TypeVar("_R", bound=type[LogReader])


def register(cls: _R) -> _R:
    """Class decorator: make a reader available by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise RegistryError(f"log format {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def log_formats() -> dict[str, type[LogReader]]:
    """Every registered log format, by name."""
    return dict(_REGISTRY)


def make_reader(name: str, **options: Any) -> LogReader:
    """A reader for a named format; ``options`` go to its constructor (field lists, mappings)."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise RegistryError(f"unknown log format {name!r} (known: {known})") from None
    return cls(**options)


def detect_format(path: Path) -> LogReader:
    """The reader whose format the file's first lines are in; InputError when none matches."""
    head = head_lines(path)
    if not head:
        raise InputError(f"{path}: empty log file")
    for cls in sorted(_REGISTRY.values(), key=lambda c: (c.detect_order, c.name)):
        reader = cls()
        if reader.sniff(head):
            return reader
    raise InputError(f"{path}:1: log format not recognised (first line: {head[0][:120]!r})")


def iter_log(path: Path, reader: LogReader | None = None) -> tuple[ReadStats, Iterator[pa.RecordBatch]]:
    """Detect (unless given) and stream one log; ``stats`` fills in as batches are consumed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such log file")
    rd = reader or detect_format(path)
    stats = ReadStats(file=str(path), format=rd.name)
    return stats, rd.read(path, stats)


def read_logs(
    paths: Iterable[Path],
    reader_for: Callable[[Path], LogReader | None] | None = None,
) -> tuple[pa.Table, list[ReadStats]]:
    """Read several logs into one table of records, with per-file statistics."""
    from corral.correlate._record import RECORD_SCHEMA

    batches: list[pa.RecordBatch] = []
    all_stats: list[ReadStats] = []
    for p in paths:
        stats, it = iter_log(Path(p), reader_for(Path(p)) if reader_for else None)
        batches.extend(it)
        all_stats.append(stats)
    return pa.Table.from_batches(batches, schema=RECORD_SCHEMA), all_stats

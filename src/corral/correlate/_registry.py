"""Log readers: the base classes, the explicit registry, and format detection.

A reader is named in data (``--format aws-vpc``), so names resolve through this
registry and an unknown name is a ``RegistryError``. Detection reads the first
lines of a file and asks each reader, most specific first, whether it is its
format. Readers stream: they yield Arrow batches and keep no more than one batch
in memory; a malformed line is counted in ``ReadStats`` and reading goes on.

Line formats also hand out a ``RecordParser`` (one line in, records out, header
state kept between lines), which is what ``Watcher`` uses to follow a growing
file; whole-document formats (Azure blobs) have none and are re-read instead.
"""

from __future__ import annotations

import csv
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pyarrow as pa

from corral.correlate._lines import head_lines, iter_lines
from corral.correlate._record import RECORD_SCHEMA, LogRecord, ReadStats, check_record, records_to_batch
from corral.errors import InputError, RegistryError

BATCH_ROWS = 65536
# What parsing one hostile line may raise; each makes that line malformed, never the file.
PARSE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # includes UnicodeError and json.JSONDecodeError
    KeyError,
    TypeError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
    csv.Error,
)


def why(exc: BaseException) -> str:
    """A one-line reason for a malformed line."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


class Batcher:
    """Collects checked records into Arrow batches; a line with any bad value is malformed as a whole."""

    def __init__(self, stats: ReadStats, rows: int = BATCH_ROWS) -> None:
        self.stats = stats
        self.rows = rows
        self._buf: list[LogRecord] = []

    def add(self, recs: list[LogRecord], line: int, text: str) -> None:
        if not recs:
            self.stats.ignored += 1
            return
        try:
            for r in recs:
                check_record(r)
        except ValueError as exc:
            self.stats.bad(line, text, f"bad value: {exc}")
            return
        self._buf.extend(recs)

    @property
    def full(self) -> bool:
        return len(self._buf) >= self.rows

    def __len__(self) -> int:
        return len(self._buf)

    def take(self) -> pa.RecordBatch | None:
        if not self._buf:
            return None
        batch = records_to_batch(self._buf)
        self.stats.records += len(self._buf)
        self._buf = []
        return batch


class RecordParser(ABC):
    """One line in, its records out; keeps what earlier lines set up (header, field list)."""

    @abstractmethod
    def parse(self, text: str, line: int) -> list[LogRecord]:
        """Records for one line (empty: a line with no record by design); raises when malformed."""

    def parse_block(self, lines: list[tuple[int, str]], stats: ReadStats) -> pa.Table | None:
        """All of ``lines`` at once (a vectorised format), or None to have them parsed one by one."""
        return None


BLOCK_LINES = 256  # fewer new lines than this are parsed one by one


def feed_lines(
    parser: RecordParser, lines: Iterable[tuple[int, str]], batcher: Batcher
) -> Iterator[pa.RecordBatch]:
    """Parse lines into batches; a malformed line is counted in the batcher's stats and skipped."""
    if isinstance(lines, list) and len(lines) >= BLOCK_LINES:
        block = [(n, t) for n, t in lines if t and not t.isspace()]
        table = parser.parse_block(block, batcher.stats)
        if table is not None:
            if (b := batcher.take()) is not None:
                yield b
            batcher.stats.records += table.num_rows
            yield from table.to_batches()
            return
    stats = batcher.stats
    for n, text in lines:
        if not text or text.isspace():
            continue
        try:
            recs = parser.parse(text, n)
        except PARSE_ERRORS as exc:
            stats.bad(n, text, why(exc))
            continue
        batcher.add(recs, n, text)
        if batcher.full and (b := batcher.take()) is not None:
            yield b
    if (b := batcher.take()) is not None:
        yield b


class LogReader(ABC):
    """One log format: detects itself from content and streams normalised records."""

    name: ClassVar[str]
    title: ClassVar[str]
    # Lower is tried first during detection; generic readers go last.
    detect_order: ClassVar[int] = 50

    @abstractmethod
    def sniff(self, head: list[str]) -> bool:
        """True when the first non-empty lines of a file are in this format."""

    def parser(self, src: str) -> RecordParser | None:
        """A line parser for this format (None for whole-document formats)."""
        return None

    def read(self, path: Path, stats: ReadStats) -> Iterator[pa.RecordBatch]:
        """Stream the file as batches of ``RECORD_SCHEMA``; count malformed lines in ``stats``."""
        parser = self.parser(str(path))
        if parser is None:
            raise NotImplementedError(f"{type(self).__name__} must implement read()")
        yield from feed_lines(parser, iter_lines(path, stats), Batcher(stats))


class _LineParser(RecordParser):
    def __init__(self, reader: LineReader, src: str) -> None:
        self.reader = reader
        self.src = src
        self.state = reader.new_state()

    def parse(self, text: str, line: int) -> list[LogRecord]:
        return list(self.reader.parse_line(text, line, self.src, self.state))


class LineReader(LogReader):
    """A format with one record (or none) per line; subclasses parse one line."""

    def new_state(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def parse_line(self, text: str, line: int, src: str, state: dict[str, Any]) -> Iterable[LogRecord]:
        """Records for one line (empty for headers/comments); raise ValueError etc. when malformed."""

    def parser(self, src: str) -> RecordParser:
        return _LineParser(self, src)


def load_json(text: str) -> Any:
    """``json.loads`` whose every failure (deep nesting included) is a ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


class JsonLineReader(LineReader):
    """One JSON object per line."""

    def parse_line(self, text: str, line: int, src: str, state: dict[str, Any]) -> Iterable[LogRecord]:
        obj = load_json(text)
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
                obj = load_json(line)
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
    try:
        head = head_lines(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    if not head:
        raise InputError(f"{path}: empty log file")
    reader = sniff_format(head)
    if reader is not None:
        return reader
    known = ", ".join(sorted(_REGISTRY))
    raise InputError(
        f"{path}:1: log format not recognised (first line: {head[0][:120]!r}); known formats: {known}. "
        "Name the format with --format (a CSV or JSON log with other column names: --format generic "
        "with --map FIELD=COLUMN)"
    )


def sniff_format(head: list[str]) -> LogReader | None:
    """The reader, most specific first, that claims these first lines (None if none does)."""
    for cls in sorted(_REGISTRY.values(), key=lambda c: (c.detect_order, c.name)):
        reader = cls()
        try:
            if reader.sniff(head):
                return reader
        except PARSE_ERRORS:
            continue
    return None


def iter_log(path: Path, reader: LogReader | None = None) -> tuple[ReadStats, Iterator[pa.RecordBatch]]:
    """Detect (unless given) and stream one log; ``stats`` fills in as batches are consumed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such log file")
    rd = reader or detect_format(path)
    stats = ReadStats(file=str(path), format=rd.name)
    return stats, _guarded(rd, path, stats)


def _guarded(reader: LogReader, path: Path, stats: ReadStats) -> Iterator[pa.RecordBatch]:
    """The reader's batches; a failure no line handler caught ends the file as one malformed entry."""
    try:
        yield from reader.read(path, stats)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    except (*PARSE_ERRORS, pa.ArrowException) as exc:
        stats.bad(0, "", f"reading stopped: {why(exc)}")


def read_logs(
    paths: Iterable[Path],
    reader_for: Callable[[Path], LogReader | None] | None = None,
) -> tuple[pa.Table, list[ReadStats]]:
    """Read several logs into one table of records, with per-file statistics."""
    batches: list[pa.RecordBatch] = []
    all_stats: list[ReadStats] = []
    for p in paths:
        stats, it = iter_log(Path(p), reader_for(Path(p)) if reader_for else None)
        batches.extend(it)
        all_stats.append(stats)
    return pa.Table.from_batches(batches, schema=RECORD_SCHEMA), all_stats

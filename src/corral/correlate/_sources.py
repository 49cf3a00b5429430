"""What a ``Watcher`` follows: growing logs, growing trace files, the event store, pushed lines.

Each source's ``poll()`` returns what is new. A log's format is detected from
its first lines (read from the start of the file even when the watch starts at
its end, which also gives CSV, AWS and Zeek readers their header), or given.
Whole-document formats (Azure NSG blobs) are re-read when the file has changed
and then stayed still for a poll, and only records past those already seen are
new.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from corral.correlate._follow import FileFollower
from corral.correlate._record import RECORD_SCHEMA, ReadStats
from corral.correlate._registry import (
    Batcher,
    LogReader,
    RecordParser,
    feed_lines,
    make_reader,
    sniff_format,
    why,
)
from corral.correlate._tracefiles import ROLL_NAME, TRACE_ERRORS, Call, TraceParser, make_trace_parser
from corral.correlate._traces import StoreReader, TraceSet
from corral.errors import InputError

DETECT_LINES = 20  # lines buffered while a new file's format is not yet known
DETECT_WAIT_POLLS = 25  # then this many polls more before giving up on it


def empty_records() -> pa.Table:
    return RECORD_SCHEMA.empty_table()


class LogSource:
    """One followed log file."""

    def __init__(self, path: Path, reader: LogReader | None, *, from_start: bool) -> None:
        self.path = Path(path)
        self.stats = ReadStats(file=str(path), format=reader.name if reader else "unknown")
        self.follower = FileFollower(self.path, self.stats, from_start=from_start)
        self.reader = reader
        self.from_start = from_start
        self.parser: RecordParser | None = None
        self.error: str | None = None
        self._waiting: list[tuple[int, str]] = []
        self._waited = 0
        self._doc_seen: tuple[int, float] | None = None
        self._doc_done: tuple[int, float] | None = None
        self._doc_records = 0
        head = self.follower.head() if self.path.is_file() else []
        if reader is None and any(t.strip() for t in head):
            self._detect([t.strip() for t in head if t.strip()], final=True)
        if self.reader is not None:
            self._start(head)

    def _detect(self, head: list[str], *, final: bool) -> None:
        found = sniff_format(head[:DETECT_LINES])
        if found is not None:
            self.reader = found
            self.stats.format = found.name
        elif final:
            first = head[0][:120]
            self.error = (
                f"{self.path}: log format not recognised (first line: {first!r}); name it with --format"
            )

    def _start(self, head: list[str]) -> None:
        assert self.reader is not None
        self.parser = self.reader.parser(str(self.path))
        if self.parser is not None and not self.from_start:
            # The watch starts at the end, but headers (CSV, AWS, Zeek #fields) are at the start.
            quiet = ReadStats("priming")
            list(feed_lines(self.parser, enumerate(head, 1), Batcher(quiet)))

    def poll(self) -> pa.Table:
        if self.error is not None:
            for n, text in self.follower.poll():
                self.stats.bad(n, text, "log format not recognised")
            return empty_records()
        if self.reader is not None and self.parser is None:
            return self._poll_document()
        lines = self.follower.poll()
        if self.reader is None:
            self._waiting += lines
            texts = [t.strip() for _, t in self._waiting if t.strip()]
            if not texts:
                return empty_records()
            self._waited += 1
            self._detect(texts, final=len(texts) >= DETECT_LINES or self._waited > DETECT_WAIT_POLLS)
            if self.reader is None:
                if self.error is not None:
                    for n, text in self._waiting:
                        self.stats.bad(n, text, "log format not recognised")
                return empty_records()
            self.parser = self.reader.parser(str(self.path))
            lines, self._waiting = self._waiting, []
            if self.parser is None:
                return self._poll_document()
        assert self.parser is not None
        return _table(feed_lines(self.parser, lines, Batcher(self.stats)))

    def _poll_document(self) -> pa.Table:
        """A whole-document format: read it again once it has changed and then stayed still."""
        assert self.reader is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return empty_records()
        now = (st.st_size, st.st_mtime)
        if now == self._doc_done:
            return empty_records()
        if now != self._doc_seen:
            self._doc_seen = now
            return empty_records()
        self._doc_done = now
        scratch = ReadStats(file=str(self.path), format=self.reader.name)
        batches = list(self.reader.read(self.path, scratch))
        table = _table(batches)
        new = table.slice(min(self._doc_records, table.num_rows))
        self._doc_records = table.num_rows
        self.stats.records += new.num_rows
        self.stats.malformed, self.stats.samples, self.stats.reasons = (
            scratch.malformed,
            scratch.samples,
            scratch.reasons,
        )
        return new

    def close(self) -> None:
        self.follower.close()


class PushedSource:
    """Lines pushed to the watcher (``Watcher.push``), one source per name and format."""

    def __init__(self, name: str, fmt: str) -> None:
        self.reader = make_reader(fmt)
        parser = self.reader.parser(name)
        if parser is None:
            raise InputError(f"log format {fmt!r} is a whole document, not lines: it cannot be pushed")
        self.parser = parser
        self.stats = ReadStats(file=name, format=fmt)
        self._line = 0

    def feed(self, lines: Iterable[str]) -> pa.Table:
        numbered = []
        for text in lines:
            self._line += 1
            numbered.append((self._line, text.rstrip("\r\n")))
        return _table(feed_lines(self.parser, numbered, Batcher(self.stats)))


class TraceFileSource:
    """One followed trace file (generic JSON lines, ROLL dump or OTLP lines); read from its start."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.stats = ReadStats(file=str(path), format="trace-unknown")
        self.follower = FileFollower(self.path, self.stats, from_start=True)
        self.parser: TraceParser | None = None
        self._waiting: list[tuple[int, str]] = []
        head = [t.strip() for t in self.follower.head() if t.strip()]
        if head:
            reader = sniff_format(head)
            if reader is not None and reader.name != "generic":
                raise InputError(f"{path}: this is a log ({reader.title}), not a trace: give it with --log")

    def poll(self) -> list[Call]:
        lines = self._waiting + self.follower.poll()
        self._waiting = []
        if self.parser is None:
            head = "\n".join(t for _, t in lines[:50])
            if not head.strip():
                self._waiting = lines
                return []
            kind = "otlp" if '"resourceSpans"' in head else "jsonl"
            if ROLL_NAME.search(self.path.name) or '"trajectory_data"' in head or '"env_info"' in head:
                kind = "roll"
            self.parser = make_trace_parser(self.path, kind, self.stats)
            self.stats.format = f"trace-{kind}"
        out: list[Call] = []
        for n, text in lines:
            if not text or text.isspace():
                continue
            try:
                calls = self.parser.parse(text, n)
            except TRACE_ERRORS as exc:
                self.stats.bad(n, text, why(exc))
                continue
            out += calls
            self.stats.records += len(calls)
        return out

    def close(self) -> None:
        self.follower.close()


class StoreSource:
    """The event store of a live run: new tool calls, egress tuples and alerts at every poll."""

    def __init__(self, path: Path) -> None:
        if not Path(path).is_file():
            raise InputError(f"{path}: no such event store")
        with Path(path).open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise InputError(f"{path}: not an event store (SQLite): give a trace file with --trace")
        self.reader = StoreReader(Path(path))
        self.stats = self.reader.stats

    def poll(self) -> TraceSet:
        return self.reader.poll()

    def close(self) -> None:
        self.reader.close()


def _table(batches: Iterable[pa.RecordBatch]) -> pa.Table:
    got = list(batches)
    return pa.Table.from_batches(got, schema=RECORD_SCHEMA) if got else empty_records()

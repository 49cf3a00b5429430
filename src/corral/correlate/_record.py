"""The normalised log record every reader produces, and per-file read statistics.

Readers stream; records travel in Arrow batches (``RECORD_SCHEMA``) so that the
attribution step can hand them to DuckDB without a Python loop per record.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pyarrow as pa

PROTO_NAMES: dict[int, str] = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}

# Verdicts normalised to a small vocabulary so rules over them stay simple.
ALLOWED = frozenset({"accept", "allow"})


@dataclass(slots=True)
class LogRecord:
    """One flow, alert or connection event from an infrastructure log."""

    file: str
    line: int
    format: str
    kind: str = "flow"  # flow | alert | dns | tls | conntrack
    start: float | None = None  # epoch seconds
    end: float | None = None
    src_ip: str | None = None
    src_port: int | None = None
    dst_ip: str | None = None
    dst_port: int | None = None
    proto: str | None = None
    action: str | None = None  # accept | deny | alert | log
    bytes: int | None = None
    packets: int | None = None
    reporter: str | None = None  # host, interface or node that logged it
    signature: str | None = None  # rule or signature name
    severity: str | None = None  # informational | low | medium | high | critical
    direction: str | None = None  # in | out
    # The reply tuple of a NATed connection (conntrack): who answered, to which address/port.
    reply_src_ip: str | None = None
    reply_src_port: int | None = None
    reply_dst_ip: str | None = None
    reply_dst_port: int | None = None
    detail: str | None = None  # domain, SNI, command line, account: shown as evidence
    workload: str | None = None  # container id, pod or sandbox name when the log knows it


RECORD_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("line", pa.int64()),
        ("format", pa.string()),
        ("kind", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("src_ip", pa.string()),
        ("src_port", pa.int64()),
        ("dst_ip", pa.string()),
        ("dst_port", pa.int64()),
        ("proto", pa.string()),
        ("action", pa.string()),
        ("bytes", pa.int64()),
        ("packets", pa.int64()),
        ("reporter", pa.string()),
        ("signature", pa.string()),
        ("severity", pa.string()),
        ("direction", pa.string()),
        ("reply_src_ip", pa.string()),
        ("reply_src_port", pa.int64()),
        ("reply_dst_ip", pa.string()),
        ("reply_dst_port", pa.int64()),
        ("detail", pa.string()),
        ("workload", pa.string()),
    ]
)
_FIELD_NAMES = [f.name for f in fields(LogRecord)]
assert RECORD_SCHEMA.names == _FIELD_NAMES


def records_to_batch(records: list[LogRecord]) -> pa.RecordBatch:
    cols = {name: [getattr(r, name) for r in records] for name in _FIELD_NAMES}
    return pa.RecordBatch.from_pydict(cols, schema=RECORD_SCHEMA)


def batch_to_records(batch: pa.RecordBatch | pa.Table) -> Iterator[LogRecord]:
    for row in batch.to_pylist():
        yield LogRecord(**row)


@dataclass
class Malformed:
    """A line a reader could not turn into a record."""

    line: int
    text: str
    reason: str


@dataclass
class ReadStats:
    """What reading one file produced: counts, and a sample of what was wrong."""

    file: str
    format: str = "unknown"
    records: int = 0
    malformed: int = 0
    samples: list[Malformed] = field(default_factory=list)
    max_samples: int = 5

    def bad(self, line: int, text: str, reason: str) -> None:
        self.malformed += 1
        if len(self.samples) < self.max_samples:
            self.samples.append(Malformed(line, text[:300], reason))


def open_text(path: Path) -> IO[str]:
    """Open a log as text, gunzipping transparently (detected by magic bytes, not name)."""
    raw = path.open("rb")
    magic = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8", errors="replace")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace")


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"


def head_lines(path: Path, n: int = 20, max_chars: int = 65536) -> list[str]:
    """The first non-empty lines of a file, for format detection."""
    out: list[str] = []
    with open_text(path) as f:
        total = 0
        for line in f:
            total += len(line)
            s = line.strip()
            if s:
                out.append(s)
            if len(out) >= n or total > max_chars:
                break
    return out


def parse_time(value: object) -> float | None:
    """Epoch seconds from epoch numbers (s, ms, us, ns) or RFC 3339 / ISO 8601 strings."""
    if value is None or value == "" or value == "-":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return _epoch(float(value))
    s = str(value).strip()
    try:
        return _epoch(float(s))
    except ValueError:
        pass
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    # Python 3.11 accepts up to microseconds; trim nanosecond fractions.
    if "." in s:
        head, _, rest = s.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(digits) :]
        s = f"{head}.{digits[:6]}{tz}"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _epoch(x: float) -> float:
    if x > 1e17:
        return x / 1e9
    if x > 1e14:
        return x / 1e6
    if x > 1e11:
        return x / 1e3
    return x


def to_int(value: object) -> int | None:
    if value is None or value == "" or value == "-":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    return int(str(value).strip())


def proto_name(value: object) -> str | None:
    """'tcp' from 6, '6', 'TCP' or 'T'."""
    if value is None or value == "" or value == "-":
        return None
    s = str(value).strip().lower()
    if s.isdigit():
        return PROTO_NAMES.get(int(s), s)
    return {"t": "tcp", "u": "udp"}.get(s, s)

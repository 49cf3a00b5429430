"""The normalised log record every reader produces, its validation, and per-file read statistics.

Readers stream; records travel in Arrow batches (``RECORD_SCHEMA``) so that the
attribution step can hand them to DuckDB without a Python loop per record. Every
record passes ``check_record`` first: a value no honest log holds (a 30-digit
port, a time in the year 50000, a dict where an address goes) makes its line
malformed instead of failing the batch it would have joined.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

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
    # An identifier the log gives one flow across its records (conntrack id, Suricata flow_id, Zeek uid).
    flow_id: str | None = None


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
        ("flow_id", pa.string()),
    ]
)
_FIELD_NAMES = [f.name for f in fields(LogRecord)]
assert RECORD_SCHEMA.names == _FIELD_NAMES

MAX_EPOCH_S = 253402300799.0  # 9999-12-31: any later "time" is an error, not a time
MAX_COUNT = (1 << 63) - 1
MAX_TEXT = 4096  # longer free-text values (details, signatures) are cut, not refused
_PORTS = ("src_port", "dst_port", "reply_src_port", "reply_dst_port")
_COUNTS = ("bytes", "packets")
_ADDRESSES = ("src_ip", "dst_ip", "reply_src_ip", "reply_dst_ip")
_TEXTS: tuple[str, ...] = ("kind", "proto", "action", "reporter", "signature", "severity", "direction")
_TEXTS += ("detail", "workload", "flow_id")


def check_record(rec: LogRecord) -> None:
    """Refuse values no honest log holds (ValueError naming the field); cut over-long free text."""
    for name in ("start", "end"):
        t = getattr(rec, name)
        if t is not None:
            if type(t) is not float:
                raise ValueError(f"{name}: not a number of seconds: {t!r}"[:200])
            if not 0.0 <= t <= MAX_EPOCH_S:  # also false for NaN
                raise ValueError(f"{name}: time out of range: {t!r}")
    if rec.start is not None and rec.end is not None and rec.end < rec.start:
        raise ValueError(f"end: before start ({rec.end} < {rec.start})")
    for name in _PORTS:
        v = getattr(rec, name)
        if v is not None and (type(v) is not int or not 0 <= v <= 65535):
            raise ValueError(f"{name}: not a port number: {v!r}"[:200])
    for name in _COUNTS:
        v = getattr(rec, name)
        if v is not None and (type(v) is not int or not 0 <= v <= MAX_COUNT):
            raise ValueError(f"{name}: not a count: {v!r}"[:200])
    for name in _ADDRESSES:
        v = getattr(rec, name)
        if v is not None and (type(v) is not str or not 0 < len(v) <= 255 or " " in v or not v.isprintable()):
            raise ValueError(f"{name}: not an address: {v!r}"[:200])
    for name in _TEXTS:
        v = getattr(rec, name)
        if v is not None:
            if type(v) is not str:
                raise ValueError(f"{name}: expected text, got {type(v).__name__}")
            if len(v) > MAX_TEXT:
                setattr(rec, name, v[:MAX_TEXT])


def records_to_batch(records: list[LogRecord]) -> pa.RecordBatch:
    """Records that passed ``check_record``, as one batch of ``RECORD_SCHEMA``."""
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
    """What reading one file produced: counts, a sample of what was wrong, and why.

    ``malformed`` counts every line (or document entry) that could not be read;
    ``reasons`` counts them by kind of problem; ``ignored`` counts lines that hold
    no record by design (headers, comments, NODATA rows, other daemons' syslog).
    """

    file: str
    format: str = "unknown"
    records: int = 0
    malformed: int = 0
    ignored: int = 0
    samples: list[Malformed] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    max_samples: int = 10

    def bad(self, line: int, text: str, reason: str) -> None:
        self.malformed += 1
        kind = reason.split(":", 1)[0][:80]
        self.reasons[kind] = self.reasons.get(kind, 0) + 1
        if len(self.samples) < self.max_samples:
            self.samples.append(Malformed(line, text[:300], reason[:500]))

    def reset(self) -> None:
        self.records = self.malformed = self.ignored = 0
        self.samples.clear()
        self.reasons.clear()


def parse_time(value: object) -> float | None:
    """Epoch seconds from epoch numbers (s, ms, us, ns) or RFC 3339 / ISO 8601 strings.

    Anything else (a list, a 400-digit number, "9999999-01-01") is a ValueError.
    """
    if value is None or value == "" or value == "-":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return _epoch(_float(value))
    if not isinstance(value, str):
        raise ValueError(f"not a time: {type(value).__name__}")
    s = value.strip()
    if len(s) > 64:
        raise ValueError(f"not a time: {s[:40]!r}...")
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


def _float(v: int | float) -> float:
    try:
        return float(v)
    except OverflowError:
        raise ValueError(f"number out of range: {str(v)[:40]}") from None


def _epoch(x: float) -> float:
    if x > 1e17:
        return x / 1e9
    if x > 1e14:
        return x / 1e6
    if x > 1e11:
        return x / 1e3
    return x


def to_int(value: object) -> int | None:
    """An integer from an int or a decimal string; anything else is a ValueError."""
    if value is None or value == "" or value == "-":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise ValueError(f"not an integer: {type(value).__name__}")
    s = value.strip()
    if len(s) > 32:
        raise ValueError(f"not an integer: {s[:40]!r}...")
    return int(s)


def proto_name(value: object) -> str | None:
    """'tcp' from 6, '6', 'TCP' or 'T'."""
    if value is None or value == "" or value == "-":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"not a protocol: {type(value).__name__}")
    s = str(value).strip().lower()[:16] if isinstance(value, str) else str(value)[:16]
    if s.isdigit():
        return PROTO_NAMES.get(int(s), s)
    return {"t": "tcp", "u": "udp"}.get(s, s)

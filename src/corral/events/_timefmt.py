"""Nanosecond timestamps as RFC 3339 text, and back (for ``--since``/``--until`` and exports)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from corral.errors import InputError

_NS = 1_000_000_000
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})?$")


def rfc3339_ns(time_ns: int) -> str:
    """``2024-05-01T12:00:00.123456789Z``: UTC, always nine fractional digits."""
    secs, frac = divmod(time_ns, _NS)
    base = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def parse_time_ns(text: str) -> int:
    """Parse epoch seconds (``1714564800.5``) or RFC 3339 (a naive time is UTC) into epoch ns."""
    s = text.strip()
    try:
        return int(Decimal(s) * _NS)  # exact: a float would lose the nanoseconds
    except (InvalidOperation, ValueError):
        pass
    m = _RFC3339.match(s)
    if not m:
        raise InputError(f"bad time {text!r}: use RFC 3339 (2024-05-01T12:00:00Z) or epoch seconds")
    date, clock, frac, tz = m.groups()
    tz = "+00:00" if tz in (None, "Z", "z") else tz
    try:
        dt = datetime.fromisoformat(f"{date}T{clock}{tz}")
    except ValueError as exc:
        raise InputError(f"bad time {text!r}: {exc}") from None
    return int(dt.timestamp()) * _NS + int((frac or "0").ljust(9, "0"))

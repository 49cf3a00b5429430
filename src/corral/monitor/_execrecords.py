"""The exec tracer's records: bpftrace's JSON output lines, or the BPF object's structs.

Both tracers write the same records: one per ``printf`` in ``_bpftrace.SCRIPT``,
one struct per record from ``exec_tracer.bpf.c``. An exec's arguments come as
``E`` (enter), then ``A`` records, then ``F``: they are written by one probe run
on one CPU and so arrive in order, keyed by thread id; ``ArgvAssembler`` joins
them into one ``ExecEnter``. Every other record is self-contained and carries
the kernel's monotonic time, so records from different CPUs can be sorted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ExecEnter:
    ns: int
    tid: int
    cgroup: int
    filename: str
    argv: list[str] = field(default_factory=list)
    truncated: bool = False


@dataclass(frozen=True)
class ExecDone:
    ns: int
    pid: int
    old_pid: int
    ppid: int
    uid: int
    cgroup: int
    filename: str
    cwd: str | None = None  # read from /proc at arrival, when the process still lives
    cmdline: tuple[str, ...] | None = None  # likewise, used only when argv was truncated


@dataclass(frozen=True)
class ExecFailed:
    ns: int
    tid: int
    cgroup: int
    errno: int


@dataclass(frozen=True)
class Fork:
    ns: int
    parent: int
    child: int
    cgroup: int


@dataclass(frozen=True)
class Exit:
    ns: int
    pid: int
    cgroup: int
    status: int  # the kernel's exit_code: (code << 8) | signal
    cpu_ns: int


@dataclass(frozen=True)
class Marker:
    ns: int
    cpu: int
    token: int


@dataclass(frozen=True)
class Lost:
    """The kernel's ring buffer overflowed: ``count`` records were lost (reported, never hidden)."""

    count: int


Record = ExecEnter | ExecDone | ExecFailed | Fork | Exit | Marker
Take = Callable[["Record | Lost"], None]  # where a tracer hands its records


class ParseError(ValueError):
    pass


# Each record's fields after its tag, CPU and sequence number: how many numbers, and whether a
# string follows them (the one field that may hold spaces, so always the last).
NUMBERS = {"S": 3, "K": 4, "E": 3, "A": 1, "F": 3, "R": 4, "X": 6, "Q": 5}
WITH_STRING = frozenset("EAX")


class ArgvAssembler:
    """Turns tracer records into ``Record``s; holds exec arguments until their ``F`` record.

    ``numbered_args``: argument records carry their own sequence numbers (the BPF object's), so a
    lost argument shows as a gap too; bpftrace's share their exec's number.
    """

    def __init__(self, strlen: int, *, numbered_args: bool = False) -> None:
        self._strlen = strlen
        self._numbered_args = numbered_args
        self._open: dict[int, ExecEnter] = {}
        self._next_seq: dict[int, int] = {}  # cpu -> the sequence number its next probe will carry
        self._pending_record: Record | None = None

    def feed(self, line: str) -> Record | Lost | None:
        """One bpftrace output line; a complete record, or None (argument lines, non-printf output)."""
        if not line.strip():  # bpftrace writes blank lines when it exits
            return None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParseError(f"not JSON: {line[:200]!r}") from exc
        if isinstance(obj, dict) and obj.get("type") == "lost_events":
            return Lost(int(obj.get("data", {}).get("events", 0)))
        if not isinstance(obj, dict) or obj.get("type") != "printf":
            return None
        text = str(obj.get("data", ""))
        if text.endswith("\n"):
            text = text[:-1]
        try:
            tag, cpu, seq, rest = text.split(" ", 3)
            numbers, string = _fields(tag, rest)
        except (ValueError, KeyError) as exc:
            raise ParseError(f"bad record {text[:200]!r}: {exc}") from exc
        return self.accept(tag, int(cpu), int(seq), numbers, string)

    def accept(self, tag: str, cpu: int, seq: int, n: list[int], string: str = "") -> Record | Lost | None:
        """One record's parts (its numbers, then its string where it has one); a complete record,
        a gap before it (``Lost``), or None."""
        try:
            gap = self._sequence(cpu, seq, tag)
            rec = self._record(tag, n, string)
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise ParseError(f"bad {tag!r} record {n!r} {string[:200]!r}: {exc}") from exc
        if gap:
            # Records this CPU wrote before this one never arrived; say so before going on.
            self._pending_record = rec
            return Lost(gap)
        return rec

    def deliver(self, rec: Record | Lost | None, take: Take) -> None:
        """Hand what ``feed`` or ``accept`` returned to ``take``: after a gap, the record behind it too."""
        if rec is None:
            return
        take(rec)
        if isinstance(rec, Lost) and (pending := self.take_pending()) is not None:
            take(pending)

    def take_pending(self) -> Record | None:
        """The record that arrived right after a reported gap (``accept`` returned Lost for it)."""
        rec, self._pending_record = self._pending_record, None
        return rec

    def _sequence(self, cpu: int, seq: int, tag: str) -> int:
        """How many probe records of ``cpu`` went missing before this one (0 when none)."""
        expected = self._next_seq.get(cpu)
        if tag in ("A", "F") and not self._numbered_args:  # lines of the exec whose E set the number
            return 0
        self._next_seq[cpu] = seq + 1
        if expected is None or seq < expected:  # first record of a CPU, or a counter restart
            return 0
        return seq - expected

    def _record(self, tag: str, n: list[int], string: str) -> Record | None:
        if tag == "A":
            enter = self._open.get(n[0])
            if enter is not None:
                enter.argv.append(string)
                # A string of the probe's full length was probably cut short.
                enter.truncated |= len(string.encode(errors="surrogateescape")) >= self._strlen - 1
            return None
        if tag == "F":
            enter = self._open.pop(n[0], None)
            if enter is not None:
                # More left unread, or fewer arguments here than the probe read: an argument
                # record was lost (the gap is reported too), so this argv is not the whole.
                enter.truncated |= n[2] == 1 or len(enter.argv) != n[1]
            return enter
        if tag == "E":
            self._open[n[1]] = ExecEnter(n[0], n[1], n[2], string)
            return None
        if tag == "X":
            return ExecDone(n[0], n[1], n[2], n[3], n[4], n[5], string)
        if tag == "R":
            return ExecFailed(n[0], n[1], n[2], -n[3])
        if tag == "K":
            return Fork(*n)
        if tag == "Q":
            return Exit(*n)
        if tag == "S":
            return Marker(*n)
        raise ValueError(f"unknown record tag {tag!r}")


def _fields(tag: str, rest: str) -> tuple[list[int], str]:
    """A bpftrace line's numbers after tag, CPU and sequence number, and its string ("" if none)."""
    numbers = NUMBERS.get(tag)
    if numbers is None:
        raise ValueError(f"unknown record tag {tag!r}")
    if tag not in WITH_STRING:
        parts = rest.split(" ")
        if len(parts) != numbers:
            raise ValueError(f"expected {numbers} fields")
        return [int(p) for p in parts], ""
    parts = _split(rest, numbers + 1)
    return [int(p) for p in parts[:-1]], parts[-1]


def _split(text: str, n: int) -> list[str]:
    parts = text.split(" ", n - 1)
    if len(parts) == n - 1:  # an empty last field (e.g. an empty filename)
        parts.append("")
    if len(parts) != n:
        raise ValueError(f"expected {n} fields")
    return parts

"""The exec tracer's records, parsed from bpftrace's JSON output lines.

One line per ``printf`` in ``_bpftrace.SCRIPT``. An exec's arguments come as
``E`` (enter), then ``A`` lines, then ``F``: they are emitted by one probe run
on one CPU and so arrive in order, keyed by thread id; ``ArgvAssembler`` joins
them into one ``ExecEnter``. Every other record is self-contained and carries
the kernel's monotonic time, so records from different CPUs can be sorted.
"""

from __future__ import annotations

import json
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


class ParseError(ValueError):
    pass


class ArgvAssembler:
    """Turns bpftrace output lines into records; holds exec arguments until their ``F`` line."""

    def __init__(self, strlen: int) -> None:
        self._strlen = strlen
        self._open: dict[int, ExecEnter] = {}
        self._next_seq: dict[int, int] = {}  # cpu -> the sequence number its next probe will carry
        self._pending_record: Record | None = None

    def feed(self, line: str) -> Record | Lost | None:
        """One output line; returns a complete record, or None (argument lines, non-printf output)."""
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
            gap = self._sequence(int(cpu), int(seq), tag)
            rec = self._record(f"{tag} {rest}")
        except (ValueError, IndexError, KeyError) as exc:
            raise ParseError(f"bad record {text[:200]!r}: {exc}") from exc
        if gap:
            # Records this CPU wrote before this one never arrived; say so before going on.
            self._pending_record = rec
            return Lost(gap)
        return rec

    def take_pending(self) -> Record | None:
        """The record that arrived right after a reported gap (``feed`` returned Lost for it)."""
        rec, self._pending_record = self._pending_record, None
        return rec

    def _sequence(self, cpu: int, seq: int, tag: str) -> int:
        """How many probe records of ``cpu`` went missing before this one (0 when none)."""
        expected = self._next_seq.get(cpu)
        if tag in ("A", "F"):  # lines of the exec whose E line set the sequence
            return 0
        self._next_seq[cpu] = seq + 1
        if expected is None or seq < expected:  # first record of a CPU, or a counter restart
            return 0
        return seq - expected

    def _record(self, text: str) -> Record | None:
        tag = text[:1]
        if tag == "A":
            _, tid, arg = _split(text, 3)
            enter = self._open.get(int(tid))
            if enter is not None:
                enter.argv.append(arg)
                # A string of the probe's full length was probably cut short.
                enter.truncated |= len(arg.encode()) >= self._strlen - 1
            return None
        if tag == "F":
            _, tid, _n, more = text.split(" ")
            enter = self._open.pop(int(tid), None)
            if enter is not None:
                enter.truncated |= more == "1"
            return enter
        if tag == "E":
            _, ns, tid, cg, filename = _split(text, 5)
            self._open[int(tid)] = ExecEnter(int(ns), int(tid), int(cg), filename)
            return None
        if tag == "X":
            _, ns, pid, old, ppid, uid, cg, filename = _split(text, 8)
            return ExecDone(int(ns), int(pid), int(old), int(ppid), int(uid), int(cg), filename)
        if tag == "R":
            _, ns, tid, cg, ret = text.split(" ")
            return ExecFailed(int(ns), int(tid), int(cg), -int(ret))
        if tag == "K":
            _, ns, parent, child, cg = text.split(" ")
            return Fork(int(ns), int(parent), int(child), int(cg))
        if tag == "Q":
            _, ns, pid, cg, status, cpu = text.split(" ")
            return Exit(int(ns), int(pid), int(cg), int(status), int(cpu))
        if tag == "S":
            _, ns, cpu, token = text.split(" ")
            return Marker(int(ns), int(cpu), int(token))
        raise ValueError(f"unknown record tag {tag!r}")


def _split(text: str, n: int) -> list[str]:
    parts = text.split(" ", n - 1)
    if len(parts) == n - 1:  # an empty last field (e.g. an empty filename)
        parts.append("")
    if len(parts) != n:
        raise ValueError(f"expected {n} fields")
    return parts

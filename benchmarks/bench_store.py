"""Event store write throughput: events/s from append() to committed (flush), median of runs.

Baseline in the same run: raw sqlite executemany of the same rows (no model, no thread).
Also the cost of the health check a harness makes before every tool call (``store.check()``),
against the cost of one ``append`` measured in the same run.
Usage: .venv/bin/python benchmarks/bench_store.py [N] [RUNS]
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from corral.events import Event, EventStore, ProcessStart, TraceContext
from corral.events._schema import INSERT, SCHEMA, to_row


def events(n: int) -> list[Event]:
    ctx = TraceContext(run_id="r", step=1, episode_id="e", turn=1, tool_call_id="c")
    return [
        Event(
            sandbox_id="sb",
            ctx=ctx,
            data=ProcessStart(ProcessId=i, Image="/bin/ls", CommandLine="ls -l", argv=["ls", "-l"]),
        )
        for i in range(n)
    ]


def store_rate(evs: list[Event], d: Path) -> float:
    with EventStore(d / f"s{time.monotonic_ns()}.db") as s:
        t = time.perf_counter()
        for e in evs:
            s.append(e)
        s.flush()
        return len(evs) / (time.perf_counter() - t)


def raw_rate(evs: list[Event], d: Path) -> float:
    conn = sqlite3.connect(d / f"r{time.monotonic_ns()}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    t = time.perf_counter()
    rows = [to_row(e) for e in evs]
    conn.execute("BEGIN")
    conn.executemany(INSERT, rows)
    conn.execute("COMMIT")
    rate = len(evs) / (time.perf_counter() - t)
    conn.close()
    return rate


def per_call_ns(evs: list[Event], d: Path) -> tuple[float, float]:
    """(ns per check(), ns per append()) on a healthy store."""
    with EventStore(d / f"c{time.monotonic_ns()}.db") as s:
        t = time.perf_counter_ns()
        for _ in evs:
            s.check()
        check = (time.perf_counter_ns() - t) / len(evs)
        t = time.perf_counter_ns()
        for e in evs:
            s.append(e)
        append = (time.perf_counter_ns() - t) / len(evs)
        s.flush()
    return check, append


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    evs = events(n)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        store = [store_rate(evs, d) for _ in range(runs)]
        raw = [raw_rate(evs, d) for _ in range(runs)]
        calls = [per_call_ns(evs, d) for _ in range(runs)]
    ms, mr = statistics.median(store), statistics.median(raw)
    mc, ma = statistics.median(c for c, _ in calls), statistics.median(a for _, a in calls)
    print(f"EventStore append->flush: median {ms:,.0f} events/s over {runs} runs of {n:,} (target >= 50,000)")
    print(f"raw sqlite executemany (baseline): median {mr:,.0f} events/s; store/raw = {ms / mr:.2f}")
    print(
        f"store.check(): median {mc:,.0f} ns per call; append(): {ma:,.0f} ns; check/append = {mc / ma:.2f}"
    )


if __name__ == "__main__":
    main()

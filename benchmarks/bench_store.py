"""Event store write throughput: events/s from append() to committed (flush), median of runs.

Baseline in the same run: raw sqlite executemany of the same rows (no model, no thread).
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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    evs = events(n)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        store = [store_rate(evs, d) for _ in range(runs)]
        raw = [raw_rate(evs, d) for _ in range(runs)]
    ms, mr = statistics.median(store), statistics.median(raw)
    print(f"EventStore append->flush: median {ms:,.0f} events/s over {runs} runs of {n:,} (target >= 50,000)")
    print(f"raw sqlite executemany (baseline): median {mr:,.0f} events/s; store/raw = {ms / mr:.2f}")


if __name__ == "__main__":
    main()

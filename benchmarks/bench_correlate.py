"""Benchmark: log records parsed and attributed per second, one core.

A day of AWS VPC flow logs (1,000,000 records, 60 s aggregation windows) from a
100-node cluster, against a 100,000-call trace. Records come from sandbox
addresses, node addresses and unknown hosts. Prints medians of several runs and
the ratio against the line-by-line Python reader measured in the same run.

    .venv/bin/python benchmarks/bench_correlate.py [--records N] [--calls N] [--hours H] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from corral.correlate import (
    LineReader,
    ReadStats,
    correlate,
    correlate_tables,
    load_traces,
    make_reader,
    read_logs,
)

T0 = 1795000000


def generate(tmp: Path, records: int, calls: int, hours: float, nodes: int = 100) -> tuple[Path, Path]:
    rnd = random.Random(1)
    span = hours * 3600
    trace = tmp / "trace.jsonl"
    sandboxes: list[tuple[str, str]] = []  # (node ip, sandbox ip) of each episode
    per_node_eps = 20
    with trace.open("w") as f:
        for n in range(nodes):
            node_ip = f"10.0.{n // 250}.{n % 250 + 1}"
            for e in range(per_node_eps):
                sb_ip = f"10.{100 + n // 250}.{n % 250}.{e + 2}"
                sandboxes.append((node_ip, sb_ip))
        per_ep = calls // len(sandboxes)
        for k, (node_ip, sb_ip) in enumerate(sandboxes):
            t = T0 + rnd.random() * 60
            gap = span / per_ep
            for turn in range(per_ep):
                dur = 2 + rnd.random() * 8
                f.write(
                    json.dumps(
                        dict(
                            run_id=f"r{k % 4}",
                            step=int((t - T0) // 600),
                            episode_id=f"ep{k}",
                            turn=turn,
                            tool_call_id=f"c{k}-{turn}",
                            sandbox_id=f"sb{k}",
                            host=node_ip,
                            sandbox_ip=sb_ip,
                            start=t,
                            end=t + dur,
                            command="pip install x",
                        )
                    )
                    + "\n"
                )
                t += gap
    log = tmp / "flow.log"
    with log.open("w") as f:
        f.write(
            "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
            "start end action log-status\n"
        )
        for i in range(records):
            node_ip, sb_ip = sandboxes[rnd.randrange(len(sandboxes))]
            r = rnd.random()
            src = (
                sb_ip
                if r < 0.45
                else node_ip
                if r < 0.8
                else f"172.16.{rnd.randrange(250)}.{rnd.randrange(250)}"
            )
            start = T0 + int(rnd.random() * span) // 60 * 60
            action = "REJECT" if rnd.random() < 0.01 else "ACCEPT"
            f.write(
                f"2 123456789012 eni-{i % 997:05d} {src} 198.51.100.{i % 250} {32768 + i % 28000} 443 6 "
                f"{1 + i % 9} {200 + i % 5000} {start} {start + 60} {action} OK\n"
            )
    return trace, log


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall and CPU seconds (CPU time is steadier on a shared machine)."""
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def line(label: str, n: int, wall: float, cpu: float) -> str:
    return f"{label:38} wall {wall:6.2f} s {n / wall:11,.0f}/s   cpu {cpu:6.2f} s {n / cpu:11,.0f}/s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.perf_counter()
        trace, log = generate(tmp, args.records, args.calls, args.hours)
        print(
            f"generated {args.records:,} flow records and {args.calls:,} calls over {args.hours:g} h "
            f"in {time.perf_counter() - t:.1f} s"
        )

        traces = load_traces([trace])
        records, stats = read_logs([log])
        n = records.num_rows
        t_trace = measure(lambda: load_traces([trace]), args.repeat)
        t_parse = measure(lambda: read_logs([log]), args.repeat)
        t_attr = measure(lambda: correlate_tables(traces, records, stats, 2.0), args.repeat)
        # The metric: log records parsed and attributed, the trace already loaded.
        t_both = measure(lambda: correlate(traces, [log], 2.0), args.repeat)
        t_all = measure(lambda: correlate([trace], [log], 2.0), args.repeat)

        # Baseline: the same reader's line-by-line Python path, on a slice of the file.
        base_n = min(n, 100_000)
        part = tmp / "part.log"
        with log.open() as src, part.open("w") as dst:
            for i, text in enumerate(src):
                if i > base_n:
                    break
                dst.write(text)
        reader = make_reader("aws-vpc-flow")
        assert isinstance(reader, LineReader)
        t_base = measure(
            lambda: sum(b.num_rows for b in LineReader.read(reader, part, ReadStats("x"))), args.repeat
        )

        result = correlate_tables(traces, records, stats, 2.0)
        a = result.attributed
        amb = sum(1 for c in a.column("candidate_count").to_pylist() if c > 1)
        print(
            f"records {n:,}; attributed {a.num_rows:,} ({amb:,} ambiguous); unattributed "
            f"{result.unattributed_table.num_rows:,}; medians of {args.repeat} runs, one core"
        )
        print(line(f"load trace ({args.calls:,} calls)", args.calls, *t_trace))
        print(line("parse logs (vectorised)", n, *t_parse))
        print(line("attribute", n, *t_attr))
        print(line("parse + attribute  [metric]", n, *t_both))
        print(line("end to end, trace load included", n, *t_all))
        print(line("baseline: line-by-line Python parse", base_n, *t_base))
        base_rate = base_n / t_base[1]
        print(f"ratio (cpu) parse vectorised / line-by-line parse:  {(n / t_parse[1]) / base_rate:5.1f}x")
        print(f"ratio (cpu) parse+attribute / line-by-line parse:   {(n / t_both[1]) / base_rate:5.1f}x")
        rate = n / t_both[1]
        print(
            "target >= 500,000 records/s parsed and attributed (cpu): "
            f"{'met' if rate >= 500_000 else 'NOT met'} ({rate:,.0f}/s)"
        )


if __name__ == "__main__":
    main()

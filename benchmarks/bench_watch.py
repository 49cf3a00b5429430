"""Benchmark: ``Watcher`` in follow mode, one core: lines per second, and latency line -> attribution.

Throughput: a flow log of N lines (the same cluster as ``bench_correlate.py``:
sandbox, node and unknown addresses, 1% rejected) is appended to a followed file
in chunks as fast as the disk takes it, while a ``Watcher`` follows it against a
trace of calls; the clock runs from the first append to the last record being
read and attributed (or left waiting). Baselines measured in the same run: the
batch ``correlate()`` of the same file, and the line-by-line parse alone.

Latency: with the watcher idle, single lines are appended one at a time (each
inside a known call, so its evidence is final at once); the time from the
append to the ``WatchItem`` reaching the consumer is measured for each. Target:
at most 2 s, with the default poll interval (0.2 s).

    .venv/bin/python benchmarks/bench_watch.py [--lines N] [--calls N] [--latency-lines N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from bench_correlate import generate

from corral.correlate import ReadStats, Watcher, WatchItem, correlate, load_traces, make_reader
from corral.correlate._lines import iter_lines
from corral.correlate._registry import Batcher, feed_lines

CHUNK_LINES = 20_000


def follow_throughput(trace: Path, log: Path, tmp: Path, *, read: bool) -> tuple[int, float, float, int]:
    """(records, wall s, cpu s, items) for following ``log``'s lines appended to a fresh file.

    ``read``: the consumer reads every attribution (so each is built); else it only counts them.
    """
    lines = log.read_text().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    live = tmp / f"live-{read}.log"
    live.write_text(header)
    items = [0]

    def count(item: WatchItem) -> None:
        items[0] += 1
        if read:
            assert item.attribution.method

    w = Watcher([live], traces=[trace], poll_s=0.05, on_item=count)
    w.step()  # the trace: calls are known before the log starts
    done = threading.Event()

    def writer() -> None:
        with live.open("a") as f:
            for i in range(0, len(body), CHUNK_LINES):
                f.write("".join(body[i : i + CHUNK_LINES]))
                f.flush()
        done.set()

    c0, t0 = time.process_time(), time.perf_counter()
    threading.Thread(target=writer).start()
    while True:
        w.step()
        if done.is_set() and w.stats().records >= len(body):
            break
    n = w.stats().records
    w.close()  # what still waits (node-only evidence settles after 5 s) is attributed now: counted
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n, wall, cpu, items[0]


def latency(trace_calls: int, tmp: Path, n: int) -> list[float]:
    """Seconds from each single appended line to its WatchItem."""
    now = time.time()
    trace = tmp / "lat-trace.jsonl"
    with trace.open("w") as f:
        for k in range(trace_calls):
            f.write(
                json.dumps(
                    dict(
                        run_id="r",
                        episode_id=f"e{k}",
                        step=0,
                        turn=0,
                        tool_call_id=f"c{k}",
                        sandbox_id=f"sb{k}",
                        host="10.0.0.1",
                        sandbox_ip=f"10.100.{k // 250}.{k % 250 + 2}",
                        start=now - 60,
                        end=now + 3600,
                        command="pip install x",
                    )
                )
                + "\n"
            )
    live = tmp / "lat.log"
    live.write_text("")
    appended: dict[int, float] = {}
    got: dict[int, float] = {}
    arrived = threading.Condition()

    def on_item(item: WatchItem) -> None:
        with arrived:
            got[item.attribution.src_port or 0] = time.monotonic()
            arrived.notify_all()

    with Watcher([live], traces=[trace], on_item=on_item) as w:  # default poll interval
        time.sleep(1.0)
        for i in range(n):
            k = i % trace_calls
            line = (
                f"2 123456789012 eni-1 10.100.{k // 250}.{k % 250 + 2} 198.51.100.9 {20000 + i} 443 6 3 180 "
                f"{int(now)} {int(now) + 1} REJECT OK\n"
            )
            with live.open("a") as f:
                appended[20000 + i] = time.monotonic()
                f.write(line)
            with arrived:
                arrived.wait_for(lambda i=i: 20000 + i in got, timeout=10)
            time.sleep(0.13)  # lines arrive at any point of the poll cycle
        del w
    return [got[p] - appended[p] for p in appended if p in got]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=500_000)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--latency-lines", type=int, default=40)
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        trace, log = generate(tmp, args.lines, args.calls, args.hours)
        print(f"generated {args.lines:,} flow lines and {args.calls:,} calls over {args.hours:g} h")

        traces = load_traces([trace])
        c0, t0 = time.process_time(), time.perf_counter()
        batch = correlate(traces, [log], 2.0)
        _b_wall, b_cpu = time.perf_counter() - t0, time.process_time() - c0
        c0 = time.process_time()
        n_att = len(batch.attributions)
        b_cpu_objs = b_cpu + time.process_time() - c0
        c0 = time.process_time()
        stats = ReadStats("x")
        parser = make_reader("aws-vpc-flow").parser(str(log))
        assert parser is not None
        parsed = sum(b.num_rows for b in feed_lines(parser, iter_lines(log, stats), Batcher(stats)))
        p_cpu = time.process_time() - c0

        n, wall, cpu, items = follow_throughput(trace, log, tmp, read=False)
        n2, wall2, cpu2, _ = follow_throughput(trace, log, tmp, read=True)
        print(f"follow mode: {n:,} records read, {items:,} attributions made while following")
        print(
            f"  consumer counts items:       wall {wall:6.2f} s {n / wall:9,.0f}/s   cpu {cpu:6.2f} s "
            f"{n / cpu:9,.0f} lines/s"
        )
        print(
            f"  consumer reads attributions: wall {wall2:6.2f} s {n2 / wall2:9,.0f}/s   cpu {cpu2:6.2f} s "
            f"{n2 / cpu2:9,.0f} lines/s"
        )
        print(
            f"baseline: batch correlate() of the same file:  cpu {b_cpu:6.2f} s {n / b_cpu:9,.0f} lines/s "
            f"({batch.attributed.num_rows:,} attributed; {b_cpu_objs:.2f} s with the {n_att:,} objects built)"
        )
        print(
            f"baseline: line-by-line parse alone:           cpu {p_cpu:6.2f} s {parsed / p_cpu:9,.0f} lines/s"
        )
        print(f"ratio (cpu) follow, counting / batch correlate:       {b_cpu / cpu:5.2f}x")
        print(f"ratio (cpu) follow, reading / batch with objects:     {b_cpu_objs / cpu2:5.2f}x")
        print(f"ratio (cpu) follow, counting / line-by-line parse:    {(n / cpu) / (parsed / p_cpu):5.2f}x")
        for label, rate in (("counting", n / cpu), ("reading", n2 / cpu2)):
            print(
                f"target >= 100,000 lines/s in follow mode, {label} (cpu): "
                f"{'met' if rate >= 100_000 else 'NOT met'} ({rate:,.0f}/s)"
            )

        lat = sorted(latency(2000, tmp, args.latency_lines))
        if lat:
            print(
                f"latency line appended -> attribution: median {statistics.median(lat):.3f} s, "
                f"p95 {lat[int(0.95 * (len(lat) - 1))]:.3f} s, max {lat[-1]:.3f} s over {len(lat)} lines "
                f"(target <= 2 s: {'met' if lat[-1] <= 2.0 else 'NOT met'})"
            )


if __name__ == "__main__":
    main()

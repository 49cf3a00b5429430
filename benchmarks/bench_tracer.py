"""The exec tracers side by side: start, stop, and the cost of a burst of execs, as medians and ratios.

  start:  ``ExecCollector.start()`` until its probes answer on every CPU, then ``close()``;
          libbpf from the node's cached object, and once with an empty cache (clang builds it)
  burst:  1,000 ``/bin/true`` in a shell loop in a call cgroup, traced by each and untraced,
          with the share of those execs each tracer reported
Baselines are measured in the same run; quote the ratios. Usage (root):
  .venv/bin/python benchmarks/bench_tracer.py [RUNS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from bench_monitor import make_scope, remove, run

from corral.events import Event, ProcessStart
from corral.monitor import ExecCollector
from corral.monitor._exec import TracerKind

EXECS = 1000


def start_stop(tracer: TracerKind) -> tuple[float, float]:
    t0 = time.perf_counter()
    c = ExecCollector(lambda e: None, tracer=tracer)
    c.start()
    t1 = time.perf_counter()
    c.close()
    return t1 - t0, time.perf_counter() - t1


def burst(tracer: TracerKind | None) -> tuple[float, float]:
    """Seconds for the loop, and the share of its execs reported (1.0 untraced)."""
    events: list[Event] = []
    c = ExecCollector(events.append, tracer=tracer) if tracer else None
    if c is not None:
        c.start()
    scope = make_scope()
    try:
        if c is not None:
            c.call_started(scope)
        t0 = time.perf_counter()
        run(scope, ["sh", "-c", f"i=0; while [ $i -lt {EXECS} ]; do /bin/true; i=$((i+1)); done"])
        took = time.perf_counter() - t0
        if c is None:
            return took, 1.0
        c.settle()
        seen = sum(1 for e in events if isinstance(e.data, ProcessStart) and e.data.Image == "/bin/true")
        return took, seen / EXECS
    finally:
        if c is not None:
            c.scope_released(scope)
            c.close()
        remove(scope)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    print(f"exec tracers, median of {runs} (cpus: {os.cpu_count()})")
    with tempfile.TemporaryDirectory() as empty:
        os.environ["CORRAL_HOME"] = empty
        t0 = time.perf_counter()
        start_stop("libbpf")
        print(f"libbpf start with an empty cache (clang builds the object): {time.perf_counter() - t0:.3f} s")
    os.environ.pop("CORRAL_HOME")
    start_stop("libbpf")  # the node's cache holds the object from here on
    starts: dict[str, list[float]] = {"libbpf": [], "bpftrace": []}
    stops: dict[str, list[float]] = {"libbpf": [], "bpftrace": []}
    for _ in range(runs):
        for tracer in ("libbpf", "bpftrace"):
            a, b = start_stop(tracer)  # type: ignore[arg-type]
            starts[tracer].append(a)
            stops[tracer].append(b)
    for tracer in ("libbpf", "bpftrace"):
        print(
            f"{tracer:9} start {statistics.median(starts[tracer]) * 1000:8.1f} ms"
            f"   close {statistics.median(stops[tracer]) * 1000:7.1f} ms"
        )
    ratio = statistics.median(starts["bpftrace"]) / statistics.median(starts["libbpf"])
    print(f"start: bpftrace / libbpf = {ratio:.1f}")
    times: dict[str, list[float]] = {"off": [], "libbpf": [], "bpftrace": []}
    seen: dict[str, list[float]] = {"off": [], "libbpf": [], "bpftrace": []}
    for _ in range(runs):
        for name, tracer in (("off", None), ("libbpf", "libbpf"), ("bpftrace", "bpftrace")):
            took, share = burst(tracer)  # type: ignore[arg-type]
            times[name].append(took)
            seen[name].append(share)
    off = statistics.median(times["off"])
    print(f"burst of {EXECS} execs: untraced {off * 1000:.0f} ms")
    for name in ("libbpf", "bpftrace"):
        med = statistics.median(times[name])
        least = min(seen[name])
        print(f"  {name:9} {med * 1000:6.0f} ms  ratio to untraced {med / off:.2f}  execs seen {least:.1%}")


if __name__ == "__main__":
    main()

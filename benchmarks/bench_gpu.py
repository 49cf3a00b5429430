"""GPU costs against baselines measured in the same run (medians, ratios).

- One GPU poll with many live calls: the collector's poll (attribution, accounting, limits,
  events) against emitting the same GpuUsage events alone.
- Sandbox create + first call + destroy with a GPU grant (fake node: real character devices
  made with mknod, NVML replayed) against the same without a grant.

Run as root: .venv/bin/python benchmarks/bench_gpu.py [--calls 2000] [--samples 64] [--n 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from corral import Harness, Policy, TraceContext
from corral.events import Event, GpuUsage
from corral.monitor import GpuCollector, GpuLimits, GpuSample, ReplaySource
from corral.sandbox import CallScope, discover_gpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gpu_support import fake_node

ROOT = Path("/sys/fs/cgroup/unified")


def _median_ms(fn: Callable[[], object], n: int) -> float:
    fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def bench_poll(calls: int, samples: int, n: int) -> None:
    scopes = [
        CallScope(
            f"sb{i}",
            TraceContext(tool_call_id=f"tc{i}"),
            {"unified": ROOT / "corral" / f"sb{i}" / f"tc{i}"},
            i,
            0,
            0,
        )
        for i in range(calls)
    ]
    step = max(1, calls // samples)
    rnd = [
        GpuSample(i % 8, 10_000 + i, 1 << 30, 50.0, f"/corral/sb{i}/tc{i}") for i in range(0, calls, step)
    ][:samples]
    sink: list[Event] = []
    c = GpuCollector(sink.append, source=ReplaySource([rnd] * (n + 2)))
    for i, s in enumerate(scopes):
        if i % 2 == 0:
            c.grant(
                s.sandbox_id, GpuLimits(frozenset({(g, None, None) for g in range(8)}), compute_budget_s=1e9)
            )
        c.call_started(s)

    def baseline() -> None:
        for x in rnd:
            sink.append(
                Event(
                    data=GpuUsage(
                        gpu_index=x.gpu_index,
                        ProcessId=x.pid,
                        used_memory_bytes=x.used_memory_bytes,
                        sm_util_pct=x.sm_util_pct,
                    )
                )
            )
        sink.clear()

    def poll() -> None:
        c.poll()
        sink.clear()

    b = _median_ms(baseline, n)
    p = _median_ms(poll, n)
    print(
        f"poll, {calls} live calls, {len(rnd)} GPU processes: {p:.2f} ms vs {b:.2f} ms for the events alone "
        f"(x{p / b:.2f})"
    )


def bench_sandbox(n: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-gpu-"))
    node = fake_node(tmp)
    inv = discover_gpus(node.dev, node.proc, lib_dirs=[str(node.lib)], bin_dirs=[str(node.bin)])
    base = Policy.default().with_overrides(monitoring={"process_exec": False, "resources": False})
    plain = Harness(base, store=None, gpu_source=ReplaySource([]))
    granted = Harness(
        base.with_overrides(gpu={"devices": [0]}), store=None, gpu_source=ReplaySource([]), gpu_inventory=inv
    )

    def once(h: Harness) -> Callable[[], None]:
        def go() -> None:
            with h.sandbox() as sb:
                sb.run("true")

        return go

    try:
        a = _median_ms(once(plain), n)
        g = _median_ms(once(granted), n)
    finally:
        plain.close()
        granted.close()
        shutil.rmtree(tmp)
    print(f"create + first call + destroy: {g:.1f} ms with a GPU grant vs {a:.1f} ms without (x{g / a:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    bench_poll(args.calls, args.samples, args.n * 5)
    bench_sandbox(args.n)


if __name__ == "__main__":
    main()

"""Sandbox cost: bare fork/exec vs a warm call vs create+call+destroy (medians, p90, ratios).

Run as root: .venv/bin/python benchmarks/bench_sandbox.py [--n 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Callable

from corral import Policy, Sandbox, TraceContext


def _measure(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    n = ap.parse_args().n
    # The sandbox alone (no collectors, no detection), then the full default harness.
    policy = Policy.default().with_overrides(
        monitoring={"process_exec": False, "resources": False}, detection={"enabled": False}
    )
    full_policy = Policy.default()
    ctx = TraceContext(run_id="bench")
    bare = _measure(lambda: subprocess.run(["/bin/true"], check=True), n)
    with Sandbox(policy) as sb:
        warm = _measure(lambda: sb.run(["/bin/true"], ctx), n)
    with Sandbox(full_policy) as sb:
        warm_full = _measure(lambda: sb.run(["/bin/true"], ctx), n)

    def cycle() -> None:
        with Sandbox(policy) as s:
            s.run(["/bin/true"], ctx)

    full = _measure(cycle, n // 2)

    def create_only() -> None:
        Sandbox(policy).close()

    create = _measure(create_only, n)
    base = statistics.median(bare)
    print(f"{'case':<34}{'median ms':>10}{'p90 ms':>10}{'x bare':>9}")
    for name, xs in (
        ("bare fork/exec of true", bare),
        ("warm sandbox call of true", warm),
        ("  + detection, exec+resource monitors", warm_full),
        ("create + destroy (no call)", create),
        ("create + first call + destroy", full),
    ):
        print(
            f"{name:<34}{statistics.median(xs):>10.2f}{_p90(xs):>10.2f}{statistics.median(xs) / base:>9.1f}"
        )
    print(f"warm call overhead over bare: {statistics.median(warm) - base:.2f} ms")
    print(f"monitoring + detection per call: {statistics.median(warm_full) - statistics.median(warm):.2f} ms")


if __name__ == "__main__":
    main()

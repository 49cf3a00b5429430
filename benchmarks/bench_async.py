"""Many concurrent calls from one event loop: wall time and event-loop lag.

Shape: C concurrent ``sleep 1`` calls over S sandboxes (default 1,000 over 100). Baseline in the
same run: the same calls through ``asyncio.to_thread`` over the synchronous Sandbox (what adapters
did before), whose default pool caps concurrency at ``min(32, cpus + 4)``.

Run as root: .venv/bin/python benchmarks/bench_async.py [--calls 1000] [--sandboxes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time

from corral import Harness, Policy, TraceContext


class LagProbe:
    """The worst delay of a 5 ms timer while the calls run: how long the loop was blocked."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = False

    async def run(self) -> None:
        while not self._stop:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.perf_counter() - t - 0.005)

    def stop(self) -> None:
        self._stop = True


class GcPauses:
    """The interpreter's cyclic collections while the calls run: a full one holds every thread and
    the loop, for a time that grows with the live objects (in the trainer's process, its own too)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, int]] = []
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._t, info["generation"]))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def summary(self) -> str:
        if not self.pauses:
            return "no collections"
        worst, gen = max(self.pauses)
        total = sum(p for p, _ in self.pauses)
        n = len(self.pauses)
        return f"{n} collections, {total * 1000:.0f} ms in all, worst {worst * 1000:.1f} ms (gen {gen})"


async def native(harness: Harness, calls: int, sandboxes: int) -> tuple[float, float, float, str]:
    t = time.perf_counter()
    sbs = [harness.async_sandbox() for _ in range(sandboxes)]
    await asyncio.gather(*(s.start() for s in sbs))
    create_s = time.perf_counter() - t
    probe = LagProbe()
    task = asyncio.ensure_future(probe.run())
    ctx = TraceContext(run_id="bench-async")
    t = time.perf_counter()
    with GcPauses() as pauses:
        results = await asyncio.gather(*(sbs[i % sandboxes].run("sleep 1", ctx) for i in range(calls)))
    wall = time.perf_counter() - t
    probe.stop()
    await task
    bad = [r for r in results if r.exit_code != 0]
    if bad:
        raise SystemExit(f"{len(bad)} calls failed: {bad[0]}")
    await asyncio.gather(*(s.close() for s in sbs))
    return create_s, wall, probe.worst, pauses.summary()


async def threaded(harness: Harness, calls: int, sandboxes: int) -> float:
    sbs = [harness.sandbox() for _ in range(sandboxes)]
    t = time.perf_counter()
    await asyncio.gather(*(asyncio.to_thread(sbs[i % sandboxes].run, "sleep 1") for i in range(calls)))
    wall = time.perf_counter() - t
    for s in sbs:
        s.close()
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--sandboxes", type=int, default=100)
    ap.add_argument("--baseline-calls", type=int, default=96)
    args = ap.parse_args()
    policy = Policy.default().with_overrides(workspace={"size_max_bytes": 8 << 20})
    harness = Harness(policy, store=None)
    try:
        create_s, wall, lag, gc_summary = asyncio.run(native(harness, args.calls, args.sandboxes))
        base = asyncio.run(threaded(harness, args.baseline_calls, min(args.sandboxes, args.baseline_calls)))
    finally:
        harness.close()
    print(f"{args.calls} concurrent `sleep 1` calls over {args.sandboxes} sandboxes, one event loop:")
    print(f"  create {args.sandboxes} sandboxes: {create_s:.2f} s")
    print(f"  wall {wall:.2f} s (ideal 1.0 s), worst event-loop lag {lag * 1000:.1f} ms")
    print(f"  garbage collection meanwhile: {gc_summary}")
    print(f"baseline: {args.baseline_calls} calls through asyncio.to_thread: {base:.2f} s")
    print(
        f"  calls per second of wall: native {args.calls / wall:.0f}, "
        f"to_thread {args.baseline_calls / base:.0f} "
        f"(ratio {(args.calls / wall) / (args.baseline_calls / base):.1f}x)"
    )


if __name__ == "__main__":
    main()

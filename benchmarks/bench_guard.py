"""What the Guard adds to a sandbox call, and how far async episodes overlap (medians, ratios).

Cases, each against its baseline measured in the same run:
- a warm call through ``Episode.run`` vs ``Sandbox.run`` on the same harness (the Responder's part);
- the same for ``AsyncEpisode.run`` vs ``AsyncSandbox.run``;
- N async episodes in one event loop, each running ``sleep S`` once: wall time vs S (ideal ratio 1),
  and against the same N calls through sync episodes in a default-sized thread pool.

Run as root: .venv/bin/python benchmarks/bench_guard.py [--n 200] [--episodes 64] [--sleep 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from corral import Guard, Policy, TraceContext


def _measure(a: Callable[[], object], b: Callable[[], object], n: int) -> tuple[list[float], list[float]]:
    """Interleaved, so that both see the same load on a shared machine."""
    a(), b()
    xs: list[float] = []
    ys: list[float] = []
    for _ in range(n):
        for fn, out in ((a, xs), (b, ys)):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
    return xs, ys


async def _ameasure(
    a: Callable[[], Awaitable[object]], b: Callable[[], Awaitable[object]], n: int
) -> tuple[list[float], list[float]]:
    await a(), await b()
    xs: list[float] = []
    ys: list[float] = []
    for _ in range(n):
        for fn, out in ((a, xs), (b, ys)):
            t = time.perf_counter()
            await fn()
            out.append((time.perf_counter() - t) * 1000)
    return xs, ys


def _row(name: str, xs: list[float], base: list[float]) -> None:
    m, b = statistics.median(xs), statistics.median(base)
    print(f"{name:44} median {m:7.2f} ms   baseline {b:7.2f} ms   ratio x{m / b:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--sleep", type=float, default=1.0)
    args = ap.parse_args()
    policy = Policy.default()
    with Guard(policy, run_id="bench-guard", store=None) as guard:
        harness = guard.harness
        assert harness is not None
        ctx = TraceContext(run_id="bench-guard", episode_id="base")
        with harness.sandbox() as sb, guard.episode("bench") as ep:
            guarded, base = _measure(lambda: ep.run("true"), lambda: sb.run("true", ctx), args.n)
        _row("sync: Episode.run vs Sandbox.run", guarded, base)

        async def async_calls() -> tuple[list[float], list[float]]:
            async with harness.async_sandbox() as asb, guard.async_episode("abench") as aep:
                return await _ameasure(lambda: aep.run("true"), lambda: asb.run("true", ctx), args.n)

        aguarded, abase = asyncio.run(async_calls())
        _row("async: AsyncEpisode.run vs AsyncSandbox.run", aguarded, abase)

        async def overlap() -> float:
            eps = [guard.async_episode(f"o{i}") for i in range(args.episodes)]
            for ep in eps:
                await ep.start()
            t = time.perf_counter()
            await asyncio.gather(*(ep.run(f"sleep {args.sleep}") for ep in eps))
            wall = time.perf_counter() - t
            for ep in eps:
                await ep.close()
            return wall

        wall = asyncio.run(overlap())
        sync_eps = [guard.episode(f"s{i}") for i in range(args.episodes)]
        t = time.perf_counter()
        with ThreadPoolExecutor() as pool:  # what asyncio.to_thread gives: min(32, cpus + 4) threads
            list(pool.map(lambda e: e.run(f"sleep {args.sleep}"), sync_eps))
        threaded = time.perf_counter() - t
        for e in sync_eps:
            e.close()
        n, s = args.episodes, args.sleep
        print(f"{n} episodes x sleep {s:g}s in one loop: {wall:.2f} s (x{wall / s:.2f} of one call)")
        print(f"  sync episodes, default thread pool: {threaded:.2f} s (async x{threaded / wall:.1f} faster)")
        print("episodes left open:", guard.open_episodes)


if __name__ == "__main__":
    main()

"""Per-call cost against the number of live sandboxes on the node (issue: cost must not grow with it).

In the same run: warm call and create at 0, 250, 500 and 1,000 live sandboxes, in-process and
through the node service (16 clients); the host's mount count at each level; ratios to the 0-live
figures (in-process) and to the 50-live figure (service calls/s).

Run as root: .venv/bin/python benchmarks/bench_scale.py [--levels 0,250,500,1000] [--n 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_service import small_policy, start_service

from corral import Harness, Policy, TraceContext
from corral.integrations.service import RemoteSandbox


def _mounts() -> int:
    with open("/proc/self/mountinfo") as f:
        return sum(1 for _ in f)


def _median_ms(fn: object, n: int) -> float:
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        xs.append((time.perf_counter() - t) * 1000)
    return statistics.median(xs)


def in_process(levels: list[int], n: int) -> None:
    policy = Policy.default().with_overrides(workspace={"size_max_bytes": 8 << 20})
    harness = Harness(policy, store=None)
    ctx = TraceContext(run_id="bench-scale")
    live: list[object] = []
    probe = harness.sandbox()
    probe.run(["/bin/true"], ctx)
    rows = []
    try:
        for level in levels:
            while len(live) < level:
                live.append(harness.sandbox())
            warm = _median_ms(lambda: probe.run(["/bin/true"], ctx), n)
            create = _median_ms(lambda: harness.sandbox().close(), max(10, n // 4))
            rows.append((level, _mounts(), warm, create))
    finally:
        for s in live:
            s.close()  # type: ignore[attr-defined]
        probe.close()
        harness.close()
    base_warm, base_create = rows[0][2], rows[0][3]
    print("in-process (default policy: detection and exec/resource monitoring on)")
    print(f"{'live':>6}{'host mounts':>13}{'warm ms':>10}{'x 0-live':>10}{'create ms':>11}{'x 0-live':>10}")
    for level, mounts, warm, create in rows:
        ratios = f"{warm / base_warm:>10.2f}{create:>11.2f}{create / base_create:>10.2f}"
        print(f"{level:>6}{mounts:>13}{warm:>10.2f}{ratios}")


def service(levels: list[int], clients: int, calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        proc, sock = start_service(tmp, small_policy(tmp / "policy.json"), max(levels) + clients + 10)
        live: list[RemoteSandbox] = []
        rows = []
        try:
            workers = [RemoteSandbox(socket_path=sock) for _ in range(clients)]
            for level in levels:
                while len(live) < level:
                    live.append(RemoteSandbox(socket_path=sock))
                t = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(lambda i: workers[i % clients].run(["/bin/true"]), range(calls)))
                rows.append((level, calls / (time.perf_counter() - t)))
            for w in workers:
                w.close()
        finally:
            for s in live:
                s.close()
            proc.terminate()
            proc.wait(30)
    base = rows[0][1]
    print(f"through the node service ({clients} clients)")
    print(f"{'live':>6}{'calls/s':>10}{'x first':>10}")
    for level, rate in rows:
        print(f"{level:>6}{rate:>10.1f}{rate / base:>10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="0,250,500,1000")
    ap.add_argument("--service-levels", default="50,1000")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--calls", type=int, default=400)
    args = ap.parse_args()
    in_process([int(x) for x in args.levels.split(",")], args.n)
    service([int(x) for x in args.service_levels.split(",")], args.clients, args.calls)


if __name__ == "__main__":
    main()

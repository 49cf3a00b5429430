"""Load test of the node service over its Unix socket.

Reports sandboxes created per second, calls per second from many concurrent
clients, memory per idle sandbox (service RSS growth / live sandboxes), and in
--soak mode the service's RSS, open fds, mount/net namespaces and cgroups over
time, which must stay flat. Baseline measured in the same run: a local
``corral.Sandbox`` call (no service) for the calls/s ratio.

    .venv/bin/python benchmarks/bench_service.py --sandboxes 200 --clients 16 --calls 400
    .venv/bin/python benchmarks/bench_service.py --sandboxes 1000          # the 1,000-live check
    .venv/bin/python benchmarks/bench_service.py --soak 600                # 10 minutes of mixed calls
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from corral import Policy, Sandbox, TraceContext
from corral.integrations.service import RemoteSandbox, ServiceClient

MiB = 1024**2


def small_policy(path: Path) -> Path:
    policy = Policy.default().with_overrides(workspace={"size_max_bytes": 8 * MiB})
    path.write_text(policy.model_dump_json())
    return path


def start_service(tmp: Path, policy: Path, max_sandboxes: int) -> tuple[subprocess.Popen[bytes], str]:
    sock = str(tmp / "bench.sock")
    corral = Path(sys.executable).with_name("corral")
    env = {**os.environ, "CORRAL_HOME": str(tmp)}
    proc = subprocess.Popen(
        [
            str(corral),
            "serve",
            "--socket",
            sock,
            "--policy",
            str(policy),
            "--max-sandboxes",
            str(max_sandboxes),
        ],
        env=env,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            ServiceClient(socket_path=sock, timeout_s=2).health()
            return proc, sock
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("service did not start") from None
            time.sleep(0.1)


def tree_stats(pid: int) -> dict[str, float]:
    """RSS (MiB) and fds of the service, plus host-wide namespaces and Corral cgroups."""
    p = psutil.Process(pid)
    procs = [p, *p.children(recursive=True)]
    rss = sum(x.memory_info().rss for x in procs if x.is_running()) / MiB
    fds = sum(x.num_fds() for x in procs if x.is_running())
    ns: set[str] = set()
    for q in psutil.process_iter():
        for kind in ("mnt", "net", "pid"):
            with contextlib.suppress(OSError):
                ns.add(os.readlink(f"/proc/{q.pid}/ns/{kind}"))
    cgroups = (
        sum(1 for d in Path("/sys/fs/cgroup").rglob("corral*") if d.is_dir())
        if Path("/sys/fs/cgroup").exists()
        else 0
    )
    return {"rss_mib": rss, "fds": fds, "namespaces": len(ns), "cgroups": cgroups}


def create_many(sock: str, n: int, workers: int) -> tuple[list[RemoteSandbox], float]:
    client = ServiceClient(socket_path=sock)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        sbs = list(ex.map(lambda _: RemoteSandbox(client=client, heartbeat=False, lease_s=3600), range(n)))
    return sbs, time.perf_counter() - t0


def call_many(sbs: list[RemoteSandbox], calls: int, clients: int) -> list[float]:
    lat: list[float] = []

    def one(i: int) -> None:
        t = time.perf_counter()
        r = sbs[i % len(sbs)].run("echo x", TraceContext(run_id="bench", episode_id=str(i % len(sbs))))
        assert r.exit_code == 0, r
        lat.append(time.perf_counter() - t)

    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(one, range(calls)))
    return lat


def local_baseline(calls: int) -> float:
    with Sandbox(Policy.default().with_overrides(workspace={"size_max_bytes": 8 * MiB})) as sb:
        t = [time.perf_counter()]
        for _ in range(calls):
            sb.run("echo x")
        return calls / (time.perf_counter() - t[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandboxes", type=int, default=200)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--soak", type=float, default=0.0, help="seconds of mixed calls; prints resource samples")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, sock = start_service(tmp, small_policy(tmp / "policy.json"), max(a.sandboxes * 2, 64))
        try:
            before = tree_stats(proc.pid)
            sbs, dt = create_many(sock, a.sandboxes, a.clients)
            idle = tree_stats(proc.pid)
            print(f"created {a.sandboxes} sandboxes in {dt:.2f}s: {a.sandboxes / dt:.1f} sandboxes/s")
            per = (idle["rss_mib"] - before["rss_mib"]) / max(a.sandboxes, 1)
            print(f"memory per idle sandbox (service RSS growth): {per * 1024:.1f} KiB; live={len(sbs)}")
            t0 = time.perf_counter()
            lat = call_many(sbs, a.calls, a.clients)
            cps = a.calls / (time.perf_counter() - t0)
            p95 = sorted(lat)[int(len(lat) * 0.95)] * 1000
            base = local_baseline(min(a.calls, 100))
            print(
                f"calls: {a.calls} from {a.clients} clients over {len(sbs)} sandboxes: {cps:.1f} calls/s, "
                f"median {statistics.median(lat) * 1000:.1f} ms, p95 {p95:.1f} ms"
            )
            print(
                f"baseline local Sandbox (1 client): {base:.1f} calls/s; "
                f"service/baseline ratio {cps / base:.2f}"
            )
            if a.soak > 0:
                print("t_s rss_mib fds namespaces cgroups live")
                end = time.monotonic() + a.soak
                while time.monotonic() < end:
                    # mixed: create, call, destroy a batch, and keep calling the long-lived ones
                    extra, _ = create_many(sock, 20, 8)
                    call_many(extra + sbs[:50], 100, a.clients)
                    for sb in extra:
                        sb.close()
                    s = tree_stats(proc.pid)
                    live = ServiceClient(socket_path=sock).health().sandboxes
                    print(
                        f"{a.soak - (end - time.monotonic()):.0f} {s['rss_mib']:.1f} {s['fds']:.0f} "
                        f"{s['namespaces']:.0f} {s['cgroups']:.0f} {live}",
                        flush=True,
                    )
            for sb in sbs:
                sb.close()
            after = tree_stats(proc.pid)
            print(f"after destroy: {after}  (before create: {before})")
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()

"""Load test of the node service over its Unix socket.

Reports sandboxes created per second, calls per second from many concurrent
clients, memory per idle sandbox (service RSS growth / live sandboxes), many
concurrent calls from one event loop through ``AsyncRemoteSandbox`` (wall time
and the client loop's lag), file transfers through the service, and in --soak
mode the service's RSS, open fds, mount/net namespaces and cgroups over time,
which must stay flat. Baselines measured in the same run: a local
``corral.Sandbox`` call (no service) for the calls/s ratio, and the same
transfers with a local sandbox for the MB/s ratio.

    .venv/bin/python benchmarks/bench_service.py --sandboxes 200 --clients 16 --calls 400
    .venv/bin/python benchmarks/bench_service.py --sandboxes 1000          # the 1,000-live check
    .venv/bin/python benchmarks/bench_service.py --async-calls 1000 --async-sandboxes 100
    .venv/bin/python benchmarks/bench_service.py --soak 600                # 10 minutes of mixed calls
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from corral import AsyncSandbox, Harness, Policy, Sandbox, TraceContext
from corral.integrations.service import AsyncRemoteSandbox, AsyncServiceClient, RemoteSandbox, ServiceClient

MiB = 1024**2


def transfer_policy() -> Policy:
    return Policy.default().with_overrides(
        workspace={"size_max_bytes": 1024 * MiB}, files={"file_max_bytes": 512 * MiB}
    )


def small_policy(path: Path) -> Path:
    policy = Policy.default().with_overrides(workspace={"size_max_bytes": 8 * MiB})
    path.write_text(policy.model_dump_json())
    (path.parent / "transfers.json").write_text(transfer_policy().model_dump_json())
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
            "--named-policy",
            f"transfers={policy.parent / 'transfers.json'}",
        ],
        env=env,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            probe = ServiceClient(socket_path=sock, timeout_s=2)
            try:
                probe.health()
            finally:
                probe.close()
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
    t0 = time.perf_counter()  # the sandboxes share one client (one pool), closed with the last of them
    with ThreadPoolExecutor(workers) as ex:
        sbs = list(ex.map(lambda _: RemoteSandbox(socket_path=sock, heartbeat=False, lease_s=3600), range(n)))
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


class LagProbe:
    """The worst delay of a 5 ms timer while the calls run: how long the client's loop was blocked."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.stopped = False

    async def run(self) -> None:
        while not self.stopped:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.perf_counter() - t - 0.005)


async def _concurrent(sbs: list[Any], calls: int) -> tuple[float, float]:
    """``calls`` concurrent ``sleep 1`` spread over ``sbs``: wall time and the loop's worst lag."""
    probe = LagProbe()
    task = asyncio.ensure_future(probe.run())
    t = time.perf_counter()
    results = await asyncio.gather(*(sbs[i % len(sbs)].run("sleep 1") for i in range(calls)))
    wall = time.perf_counter() - t
    probe.stopped = True
    await task
    bad = [r for r in results if r.exit_code != 0]
    if bad:
        raise SystemExit(f"{len(bad)} calls failed: {bad[0]}")
    return wall, probe.worst


async def async_calls(sock: str, calls: int, sandboxes: int) -> tuple[float, float, float]:
    """Through the service: remote sandboxes, one loop, one client (one connection pool)."""
    client = AsyncServiceClient(socket_path=sock)
    sbs = [AsyncRemoteSandbox(client=client, lease_s=600) for _ in range(sandboxes)]
    t = time.perf_counter()
    await asyncio.gather(*(sb.start() for sb in sbs))
    create_s = time.perf_counter() - t
    try:
        wall, lag = await _concurrent(sbs, calls)
    finally:
        await asyncio.gather(*(sb.close() for sb in sbs))
        await client.aclose()
    return create_s, wall, lag


async def async_local(calls: int, sandboxes: int) -> tuple[float, float, float]:
    """The baseline: the same shape with local AsyncSandboxes of one Harness in this process."""
    harness = Harness(Policy.default().with_overrides(workspace={"size_max_bytes": 8 * MiB}), store=None)
    sbs = [harness.async_sandbox() for _ in range(sandboxes)]
    t = time.perf_counter()
    await asyncio.gather(*(sb.start() for sb in sbs))
    create_s = time.perf_counter() - t
    try:
        wall, lag = await _concurrent(sbs, calls)
    finally:
        await asyncio.gather(*(sb.close() for sb in sbs))
        harness.close()
    return create_s, wall, lag


def _payload(tmp: Path, size: int) -> Path:
    src = tmp / "payload"
    (src / "tree").mkdir(parents=True, exist_ok=True)
    block = os.urandom(MiB)
    with (src / "big.bin").open("wb") as f:
        for i in range(size // MiB):
            f.write(block[i % MiB :] + block[: i % MiB])
    for i in range(200):  # and many small files
        (src / "tree" / f"f{i}.txt").write_bytes(os.urandom(4096))
    return src


async def _transfer(sb: object, src: Path, out: Path) -> tuple[float, float]:
    t = time.perf_counter()
    await sb.upload(src, "in")  # type: ignore[attr-defined]
    up = time.perf_counter() - t
    t = time.perf_counter()
    await sb.download("in", out)  # type: ignore[attr-defined]
    down = time.perf_counter() - t
    return up, down


def transfers(sock: str, tmp: Path, size: int) -> None:
    src = _payload(tmp, size)
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())

    async def remote() -> tuple[float, float]:
        async with AsyncRemoteSandbox("transfers", socket_path=sock) as sb:
            return await _transfer(sb, src, tmp / "out-remote")

    async def local() -> tuple[float, float]:
        async with AsyncSandbox(transfer_policy(), store=None) as sb:
            return await _transfer(sb, src, tmp / "out-local")

    r_up, r_down = asyncio.run(remote())
    l_up, l_down = asyncio.run(local())
    same = (
        hashlib.sha256((tmp / "out-remote" / "big.bin").read_bytes()).digest()
        == hashlib.sha256((src / "big.bin").read_bytes()).digest()
    )
    mb = total / MiB
    print(f"transfers of {mb:.0f} MiB (one file and 200 small ones), intact: {same}")
    print(f"  upload:   service {mb / r_up:.0f} MiB/s, local {mb / l_up:.0f} MiB/s, ratio {l_up / r_up:.2f}")
    print(
        f"  download: service {mb / r_down:.0f} MiB/s, local {mb / l_down:.0f} MiB/s, "
        f"ratio {l_down / r_down:.2f}"
    )


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
    ap.add_argument("--async-calls", type=int, default=1000)
    ap.add_argument("--async-sandboxes", type=int, default=100)
    ap.add_argument("--transfer-mib", type=int, default=128)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        need = max(a.sandboxes * 2, a.sandboxes + a.async_sandboxes + 8, 64)
        proc, sock = start_service(tmp, small_policy(tmp / "policy.json"), need)
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
            if a.async_calls:
                n, k = a.async_calls, a.async_sandboxes
                create_s, wall, lag = asyncio.run(async_calls(sock, n, k))
                l_create, l_wall, l_lag = asyncio.run(async_local(n, k))
                print(f"async: {n} concurrent 'sleep 1' over {k} sandboxes, one event loop (ideal 1.00 s)")
                print(
                    f"  service: wall {wall:.2f} s, loop lag max {lag * 1000:.1f} ms, create {create_s:.2f} s"
                )
                print(
                    f"  local (baseline): wall {l_wall:.2f} s, loop lag max {l_lag * 1000:.1f} ms, "
                    f"create {l_create:.2f} s; service/local wall ratio {wall / l_wall:.2f}"
                )
            if a.transfer_mib:
                transfers(sock, tmp, a.transfer_mib * MiB)
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
                    probe = ServiceClient(socket_path=sock)
                    live = probe.health().sandboxes
                    probe.close()
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

"""Which exec source sees every program: bpftrace tracepoints vs the proc connector.

Runs a burst of short-lived execs (``/bin/true tagN``) in a fresh cgroup and counts, for
each source, how many execs it reported with the right argv and cgroup. The proc connector
only sends a pid: argv and cgroup must be read from /proc before the process is gone, which
is the race this measures. The exec collector (bpftrace) reads argv in the probe itself.

Run as root: .venv/bin/python benchmarks/bench_exec_sources.py [--n 2000]
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path

from corral.events import Event, Health, ProcessStart, TraceContext
from corral.monitor import ExecCollector
from corral.sandbox import CallScope

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_EXEC = 0x00000002
ROOT = Path("/sys/fs/cgroup")


def _proc_connector_listen() -> socket.socket:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    s.bind((os.getpid(), CN_IDX_PROC))
    op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
    cn_msg = struct.pack("=IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
    nl = struct.pack("=IHHII", 16 + len(cn_msg), 3, 0, 0, os.getpid()) + cn_msg  # NLMSG_DONE
    s.send(nl)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
    return s


def _connector_reader(
    sock: socket.socket, cg_rel: str, seen: list[tuple[str, ...]], stop: threading.Event
) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        # nlmsghdr(16) + cn_msg(20) + proc_event: what(4) cpu(4) timestamp(8) then exec: pid, tgid
        what = struct.unpack_from("=I", data, 36)[0]
        if what != PROC_EVENT_EXEC:
            continue
        pid = struct.unpack_from("=I", data, 52)[0]
        try:
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
            argv = tuple(Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1])
        except OSError:
            continue  # already gone: the race this benchmark measures
        if cg_rel in cgroup:
            seen.append(argv)


def _cgroup() -> tuple[dict[str, Path], str]:
    rel = f"corral-bench-{uuid.uuid4().hex[:8]}"
    paths = {}
    for c in ("unified", "memory", "pids", "cpu", "cpuacct"):
        p = ROOT / c / rel
        p.mkdir()
        paths[c] = p
    return paths, rel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    n = ap.parse_args().n
    paths, rel = _cgroup()
    events: list[Event] = []
    conn_seen: list[tuple[str, ...]] = []
    stop = threading.Event()
    sock = _proc_connector_listen()
    reader = threading.Thread(target=_connector_reader, args=(sock, rel, conn_seen, stop), daemon=True)
    reader.start()
    try:
        with ExecCollector(events.append) as coll:
            scope = CallScope(
                "bench", TraceContext(tool_call_id="bench"), paths, paths["unified"].stat().st_ino, 0, 0
            )
            coll.call_started(scope)
            procs = [str(p / "cgroup.procs") for p in paths.values()]

            def enter() -> None:
                for f in procs:
                    with open(f, "w") as fh:
                        fh.write("0")

            t0 = time.perf_counter()
            subprocess.run(
                ["sh", "-c", f"i=0; while [ $i -lt {n} ]; do /bin/true tag $i; i=$((i+1)); done"],
                preexec_fn=enter,
                check=True,
            )
            elapsed = time.perf_counter() - t0
            coll.call_finished(scope)
            time.sleep(0.5)
    finally:
        stop.set()
        reader.join()
        for p in paths.values():
            p.rmdir()
    bpf = {
        tuple(e.data.argv) for e in events if isinstance(e.data, ProcessStart) and e.data.Image == "/bin/true"
    }
    conn = {a for a in conn_seen if a[:2] == ("/bin/true", "tag")}
    print(f"{n} execs of /bin/true in {elapsed:.2f} s ({n / elapsed:.0f}/s)")
    print(f"{'source':<34}{'seen with argv':>16}{'share':>8}")
    print(f"{'bpftrace tracepoints (collector)':<34}{len(bpf):>16}{len(bpf) / n:>8.1%}")
    print(f"{'proc connector + /proc reads':<34}{len(conn):>16}{len(conn) / n:>8.1%}")
    lost = sum(e.data.count for e in events if isinstance(e.data, Health) and e.data.status == "failed")
    print(f"records the collector reported lost: {lost}")
    missing = sorted(set(range(n)) - {int(a[2]) for a in bpf if len(a) == 3})
    if missing:
        print(f"missing from the collector: {missing[:20]}")


if __name__ == "__main__":
    main()

"""Egress costs: sandbox netns creation (cold vs warm pool), connect through the proxy vs direct on
loopback, and how fast a denied connect fails. Prints medians and ratios.

Safety: the script first moves itself into a private network namespace, so every address it
dials (loopback, the sandbox gateway, a never-routed 198.18.0.0/15 address) lives in namespaces
it created. Run as root:  .venv/bin/python benchmarks/bench_egress.py [--n 100]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable

from corral.egress import Egress
from corral.egress._export import FORMATS, render
from corral.egress._fingerprint import SNIFF_BYTES, Sniffer
from corral.egress._flow import Account, ClientData, Connected, Flow, ServerData
from corral.egress._nsutil import CLONE_NEWNET, in_netns
from corral.egress._rules import Rules
from corral.policy import Policy


def median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def echo_server() -> int:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)

    def serve() -> None:
        while True:
            c, _ = srv.accept()
            threading.Thread(target=lambda c=c: (c.sendall(c.recv(64)), c.close()), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return int(srv.getsockname()[1])


def direct(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"ping")
        assert s.recv(64) == b"ping"


def via_proxy(gw: str, proxy_port: int, port: int) -> None:
    with socket.create_connection((gw, proxy_port)) as s:
        s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(256)
        assert head.startswith(b"HTTP/1.1 200"), head
        s.sendall(b"ping")
        assert s.recv(64) == b"ping"


def denied_direct() -> None:
    s = socket.socket()
    try:
        s.connect(("198.18.99.2", 22))
    except OSError:
        return
    finally:
        s.close()
    raise AssertionError("a denied connect succeeded")


def denied_proxy(gw: str, proxy_port: int) -> None:
    with socket.create_connection((gw, proxy_port)) as s:
        s.sendall(b"CONNECT evil.example.org:443 HTTP/1.1\r\n\r\n")
        assert s.recv(256).startswith(b"HTTP/1.1 403")


def relay_flow(sniff: bool) -> None:
    """One CONNECT flow relaying 64 chunks of 4 KiB each way through the pure state machine."""
    rules = Rules(Policy.from_yaml("network:\n  mode: allowlist\n  allow: ['198.18.7.2:443']\n").network)
    f = Flow(rules, Account(10, 1 << 30))
    f.handle(ClientData(b"CONNECT 198.18.7.2:443 HTTP/1.1\r\n\r\n"))
    f.handle(Connected("198.18.7.1", 1, "198.18.7.2", 443))
    if not sniff:  # the baseline: a sniffer that has already seen its budget
        f._sniffer = Sniffer("198.18.7.2")
        f._sniffer.client(b"\x01" * SNIFF_BYTES)
        f._sniffer.server(b"\x01" * SNIFF_BYTES)
    chunk = b"\x17\x03\x03" + bytes(4093)
    for _ in range(64):
        f.handle(ClientData(chunk))
        f.handle(ServerData(chunk))


def export_bench(n: int) -> None:
    allow = [f"93.{i % 200}.{i // 200}.0/24:443,80" for i in range(200)] + [
        f"h{i}.example.org" for i in range(50)
    ]
    deny = [f"93.{i % 200}.{i // 200}.{i % 250}" for i in range(0, 200, 3)]
    pol = Policy.from_yaml(f"network:\n  mode: allowlist\n  allow: {allow}\n  deny: {deny}\n")
    base = median_ms(lambda: Rules(pol.network), max(5, n // 10))
    print(f"policy of {len(allow)} allows / {len(deny)} denies: Rules() {base:.2f} ms (baseline)")
    for fmt in FORMATS:
        ms = median_ms(lambda fmt=fmt: render(pol, fmt), max(5, n // 10))  # type: ignore[misc]
        print(f"  render {fmt:<18} {ms:8.2f} ms  ({ms / base:.0f}x Rules())")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    n = ap.parse_args().n
    plain = median_ms(lambda: relay_flow(False), n)
    sniffed = median_ms(lambda: relay_flow(True), n)
    print(f"flow relay, 2 x 256 KiB in 4 KiB chunks: {plain:.3f} ms without fingerprinting (baseline), "
          f"{sniffed:.3f} ms with ({sniffed / plain:.2f}x)")  # fmt: skip
    export_bench(n)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise SystemExit("needs root (unshare CLONE_NEWNET)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    port = echo_server()
    policy = Policy.from_yaml(f"network:\n  mode: allowlist\n  allow: ['127.0.0.1:{port}']\n")
    events: list[object] = []

    with Egress.start(policy, events.append, pool_size=0) as eg:
        cold_times, close_times = [], []
        for _ in range(max(10, n // 5)):
            t = time.perf_counter()
            a = eg.attach("bench")
            t2 = time.perf_counter()
            a.close()  # pool_size=0: queued for teardown on the pool thread
            cold_times.append((t2 - t) * 1000)
            close_times.append((time.perf_counter() - t2) * 1000)
        cold, teardown = statistics.median(cold_times), statistics.median(close_times)
    with Egress.start(policy, events.append, pool_size=1) as eg:
        warm_times = []
        for _ in range(max(10, n // 5)):
            eg.refill()
            t = time.perf_counter()
            a = eg.attach("bench")
            warm_times.append((time.perf_counter() - t) * 1000)
            a.close()
        warm = statistics.median(warm_times)

        att = eg.attach("bench")
        fd = os.open(att.netns_path, os.O_RDONLY)
        results: dict[str, float] = {}

        def inside() -> None:  # a thread in the sandbox netns plays the tool
            with in_netns(fd):
                results["proxy"] = median_ms(lambda: via_proxy(att.gateway, att.proxy_port, port), n)
                results["denied_direct"] = median_ms(denied_direct, n)
                results["denied_proxy"] = median_ms(lambda: denied_proxy(att.gateway, att.proxy_port), n)

        th = threading.Thread(target=inside)
        th.start()
        th.join()
        results["direct"] = median_ms(lambda: direct(port), n)
        att.close()
        os.close(fd)

    d, p = results["direct"], results["proxy"]
    print(
        f"sandbox netns: cold create {cold:.2f} ms, warm pool attach {warm:.3f} ms, ratio {cold / warm:.0f}x"
    )
    print(f"sandbox netns teardown (off the caller's path, on the pool thread): {teardown:.2f} ms")
    print(
        f"connect+1 RTT: direct loopback {d:.3f} ms, via proxy {p:.3f} ms, "
        f"ratio {p / d:.1f}x (overhead {p - d:.3f} ms)"
    )
    print(
        f"denied connect: direct (nftables reject) {results['denied_direct']:.3f} ms, "
        f"proxy 403 {results['denied_proxy']:.3f} ms; vs allowed direct "
        f"{results['denied_direct'] / results['direct']:.2f}x"
    )
    print(f"events recorded: {len(events)} (n={n})")


if __name__ == "__main__":
    main()

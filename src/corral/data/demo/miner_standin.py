"""A stand-in cryptominer for ``corral demo``; it mines nothing and is not a miner.

It keeps one core busy hashing (sha256 of a counter), and every ``retry_s`` tries to reach
its pool and speak stratum (mining.subscribe, mining.authorize), as a real miner keeps
retrying a pool it cannot reach. It stops by itself after ``max_s``.

Usage: python3 miner_standin.py CONFIG.json   (keys: pool "HOST:PORT", user, retry_s, max_s)
"""

import hashlib
import json
import socket
import sys
import threading
import time


def pool_loop(host: str, port: int, user: str, retry_s: float, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=retry_s) as s:
                f = s.makefile("rwb")
                for i, (method, params) in enumerate(
                    [("mining.subscribe", ["standin/1.0"]), ("mining.authorize", [user, "x"])], 1
                ):
                    f.write(json.dumps({"id": i, "method": method, "params": params}).encode() + b"\n")
                    f.flush()
                    f.readline()
                stop.wait(10 * retry_s)  # the pool answered: containment failed; keep the session a while
        except OSError:
            pass
        stop.wait(retry_s)


def main() -> None:
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    host, _, port = cfg["pool"].rpartition(":")
    retry_s, max_s = float(cfg.get("retry_s", 1.0)), float(cfg.get("max_s", 120.0))
    stop = threading.Event()
    threading.Thread(
        target=pool_loop, args=(host, int(port), cfg["user"], retry_s, stop), daemon=True
    ).start()
    end, n = time.monotonic() + max_s, 0
    while time.monotonic() < end:
        for _ in range(50_000):
            hashlib.sha256(n.to_bytes(8, "little")).digest()
            n += 1
    stop.set()


main()

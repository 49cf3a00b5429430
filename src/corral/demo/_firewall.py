"""The simulated node firewall: an AWS VPC Flow Logs (v2) file written line by line as attempts happen.

It is what a cloud firewall would record had the sandboxes' attempts left the node:
one REJECT record for each connection the egress layer refused (the kernel logged
the packet, or the proxy refused the request), written the moment Corral sees it,
plus the node's own unrelated traffic every few seconds. Sandboxes have their own
addresses, so the records name them (as flow logs of pods with VPC addresses do);
they carry no run, episode or call: the ``Watcher`` following the file has to work
that out. It is the only input the team in the original incident had.

``NodeFirewall`` is an event sink for the harness (``Harness(sinks=[fw.observe])``).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from corral.events import Event, NetworkConnection

HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol "
    "packets bytes start end action log-status"
)
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}
ACCOUNT = "123456789012"
ENI = "eni-0a1b2c3d4e5f67890"
# The node's own traffic: NTP and an object store (documentation addresses: parsed, never dialled).
BACKGROUND = (("192.0.2.123", 123, 17, 76), ("192.0.2.80", 443, 6, 52_000))
BACKGROUND_EVERY_S = 3.0


@dataclass(frozen=True)
class FirewallRecord:
    """One line the firewall wrote: where it is and what it says."""

    line: int
    time_s: float
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    protocol: str
    action: str  # ACCEPT or REJECT
    sandbox_id: str | None  # known to the demo only, never written to the log


def _refused(ev: Event) -> NetworkConnection | None:
    d = ev.data
    if not isinstance(d, NetworkConnection) or d.decision != "denied" or not d.DestinationIp:
        return None
    if d.rule == "nftables:host-port":  # the node itself (the proxy's host): never on the node's wire
        return None
    if d.layer == "dns":
        return None
    return d


class NodeFirewall:
    """Writes the flow log as the egress layer refuses attempts; thread-safe."""

    def __init__(self, path: Path, node_ip: str, *, seed: int = 0, background: bool = True) -> None:
        self.path = path
        self.node_ip = node_ip
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._file: IO[str] | None = path.open("w", buffering=1)  # line-buffered: readers see whole lines
        self._file.write(HEADER + "\n")
        self._line = 1
        self.records: list[FirewallRecord] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._background, name="demo-firewall", daemon=True)
            self._thread.start()

    def observe(self, ev: Event) -> None:
        """Harness event sink: a refused connection becomes one REJECT record, now."""
        d = _refused(ev)
        if d is None:
            return
        proto = (d.Protocol or "tcp").lower()
        self._write(
            ev.time_ns / 1e9,
            d.SourceIp or self.node_ip,
            d.SourcePort or self._port(),
            d.DestinationIp or "",
            d.DestinationPort or 0,
            proto,
            "REJECT",
            ev.sandbox_id,
        )

    def _port(self) -> int:
        return self._rng.randint(32768, 60999)

    def _write(
        self,
        t: float,
        src: str,
        sport: int,
        dst: str,
        dport: int,
        proto: str,
        action: str,
        sandbox_id: str | None,
    ) -> None:
        packets, size = (3, 180) if action == "REJECT" else (4, 52_000 if dport == 443 else 76)
        start = int(t)
        line = (
            f"2 {ACCOUNT} {ENI} {src} {dst} {sport} {dport} {PROTOCOLS.get(proto, 6)} "
            f"{packets} {size} {start} {start + 1} {action} OK\n"
        )
        with self._lock:
            if self._file is None:
                return
            self._file.write(line)
            self._line += 1
            self.records.append(
                FirewallRecord(self._line, t, src, sport, dst, dport, proto, action, sandbox_id)
            )

    def _background(self) -> None:
        while not self._stop.wait(BACKGROUND_EVERY_S):
            for dst, dport, proto, _size in BACKGROUND:
                name = "udp" if proto == 17 else "tcp"
                self._write(time.time(), self.node_ip, self._port(), dst, dport, name, "ACCEPT", None)

    @property
    def rejected(self) -> list[FirewallRecord]:
        with self._lock:
            return [r for r in self.records if r.action == "REJECT"]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

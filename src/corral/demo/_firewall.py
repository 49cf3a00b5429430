"""A simulated node firewall log for the demo run, in the AWS VPC Flow Logs v2 format.

It is what a cloud firewall would have recorded had the misbehaving calls'
traffic left the node: one REJECT record per attempt, from the node's address,
at the time the call ran, plus unrelated background traffic of the node. It is
the only input the team in the original incident had; correlation turns it back
into episodes and tool calls.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from corral.demo._loop import CallRecord

HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol "
    "packets bytes start end action log-status"
)
_PROTO = {"tcp": 6, "udp": 17, "icmp": 1}
ACCOUNT = "123456789012"
ENI = "eni-0a1b2c3d4e5f67890"


def write_flow_log(path: Path, calls: Iterable[CallRecord], node_ip: str, seed: int) -> int:
    rng = random.Random(seed)
    lines: list[tuple[int, str]] = []
    first, last = None, None
    for c in calls:
        start_s = int(c.start_s)
        first = start_s if first is None else min(first, start_s)
        last = start_s if last is None else max(last, start_s)
        m = c.misbehaviour
        if m is None or m.dest_ip is None or m.dest_port is None:
            continue
        sport = rng.randint(32768, 60999)
        end_s = start_s + max(1, int(c.result.duration_s + 0.999))
        lines.append(
            (
                start_s,
                f"2 {ACCOUNT} {ENI} {node_ip} {m.dest_ip} {sport} {m.dest_port} {_PROTO[m.protocol]} "
                f"3 180 {start_s} {end_s} REJECT OK",
            )
        )
    if first is not None and last is not None:
        # Background traffic of the node itself: NTP and an object store the trainer uses.
        for _ in range(max(3, len(lines))):
            t = rng.randint(first, last + 1)
            for dst, dport, proto, size in (("192.0.2.123", 123, 17, 76), ("192.0.2.80", 443, 6, 52000)):
                sport = rng.randint(32768, 60999)
                rec = f"2 {ACCOUNT} {ENI} {node_ip} {dst} {sport} {dport} {proto} 4 {size} {t} {t + 1}"
                rec += " ACCEPT OK"
                lines.append((t, rec))
    lines.sort()
    path.write_text(HEADER + "\n" + "\n".join(line for _, line in lines) + "\n")
    return len(lines)

"""What each sandbox's network activity becomes: the events the egress layer emits.

``Attached`` is one sandbox's live state on the loop thread (its slot, budgets, the call
context that tags its events, retransmit dedup); ``Emitter`` builds ``Event``s from proxy
records, DNS outcomes and logged packets and hands them to the harness's ``emit``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from corral.egress._dns import DnsOutcome
from corral.egress._flow import Account, Record
from corral.egress._netns import Slot
from corral.egress._nflog import LoggedPacket
from corral.egress._rules import parse_ip
from corral.events import DnsQuery, Event, Health, NetworkConnection, TraceContext

DEDUP_WINDOW_S = 120.0


class Emitter:
    def __init__(self, emit: Callable[[Event], None], host: str | None) -> None:
        self._emit = emit
        self.host = host

    def emit(
        self,
        st: Attached,
        payload: NetworkConnection | DnsQuery,
        time_ns: int | None = None,
        ctx: TraceContext | None = None,
    ) -> None:
        ev = Event(
            time_ns=time_ns or time.time_ns(),
            host=self.host,
            sandbox_id=st.sandbox_id,
            ctx=ctx or st.ctx,
            data=payload,
        )
        with contextlib.suppress(Exception):  # a failing sink must not kill the loop; the store reports it
            self._emit(ev)

    def health(self, status: str, message: str) -> None:
        with contextlib.suppress(Exception):
            self._emit(Event(host=self.host, data=Health(component="egress", status=status, message=message)))


@dataclass
class Attached:
    """A sandbox's live state on the loop thread; the proxy's ``FlowOwner``."""

    emitter: Emitter
    sandbox_id: str
    slot: Slot
    account: Account
    gateway: str
    ctx: TraceContext = field(default_factory=TraceContext)
    dns_queries: int = 0
    closers: set[Callable[[], None]] = field(default_factory=set)
    seen: dict[tuple[object, ...], float] = field(default_factory=dict)

    def record(self, rec: Record, start_ns: int, client: tuple[str, int], ctx: TraceContext) -> None:
        host_ip = parse_ip(rec.host) if rec.host is not None else None
        out = rec.outside
        self.emitter.emit(
            self,
            NetworkConnection(
                Protocol="tcp",
                DestinationIp=rec.ip if rec.ip is not None else (str(host_ip) if host_ip else None),
                DestinationPort=rec.port,
                DestinationHostname=None if host_ip is not None else rec.host,
                SourceIp=client[0],
                SourcePort=client[1],
                decision=rec.decision,
                rule=rec.rule,
                layer="proxy",
                proxy_protocol=rec.proxy_protocol,
                bytes_sent=rec.bytes_sent,
                bytes_received=rec.bytes_received,
                outside_src_ip=out.local_ip if out else None,
                outside_src_port=out.local_port if out else None,
                outside_dst_ip=out.remote_ip if out else None,
                outside_dst_port=out.remote_port if out else None,
                fingerprint=rec.fingerprint,
                fingerprint_detail=rec.fingerprint_detail,
            ),
            time.time_ns() if rec.interim else start_ns,
            ctx,
        )

    def track(self, closer: Callable[[], None]) -> Callable[[], None]:
        self.closers.add(closer)
        return lambda: self.closers.discard(closer)

    def dns(self, out: DnsOutcome) -> None:
        self.emitter.emit(
            self,
            DnsQuery(
                QueryName=out.name,
                QueryType=out.qtype,
                decision="allowed" if out.decision == "allowed" else "denied",
                rule=out.rule,
                answers=list(out.answers),
            ),
        )

    def packets(self, packets: list[LoggedPacket]) -> None:
        """One event per attempt the sandbox's nftables refused (retransmits folded)."""
        now = time.monotonic()
        if len(self.seen) > 4096:  # forget attempts older than the window
            self.seen = {k: t for k, t in self.seen.items() if now - t < DEDUP_WINDOW_S}
        for p in packets:
            key = p.attempt_key()
            last = self.seen.get(key)
            self.seen[key] = now
            if last is not None and now - last < DEDUP_WINDOW_S:
                continue
            self.emitter.emit(
                self,
                NetworkConnection(
                    Protocol=p.protocol,
                    DestinationIp=p.dst,
                    DestinationPort=p.dst_port,
                    SourceIp=p.src,
                    SourcePort=p.src_port,
                    decision="denied",
                    rule="nftables:host-port" if p.dst == self.gateway else "nftables:default-drop",
                    layer="nftables",
                    User=str(p.uid) if p.uid is not None else None,
                ),
            )

"""``Event.record()`` (detection's unserialised view) carries the same fields and values as ``flat()``."""

from __future__ import annotations

from corral.events import Event, NetworkConnection, TraceContext


def test_record_matches_flat() -> None:
    ev = Event(
        time_ns=1_500_000_000,
        host="node-1",
        sandbox_id="sb1",
        seq=7,
        ctx=TraceContext(run_id="r", step=2, episode_id="e1", turn=3, tool_call_id="tc"),
        data=NetworkConnection(
            Protocol="tcp",
            DestinationIp="203.0.113.5",
            DestinationPort=4444,
            decision="denied",
            layer="nftables",
        ),
    )
    flat = ev.flat()
    rec = ev.record()
    assert set(flat) - {"time"} == set(rec)
    assert all(rec[k] == flat[k] for k in rec)

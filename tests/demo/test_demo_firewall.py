"""The simulated node firewall: one REJECT line per refused connection, written the moment it is seen."""

from __future__ import annotations

import time
from pathlib import Path

from corral.correlate import read_logs
from corral.demo._firewall import HEADER, NodeFirewall
from corral.events import Event, NetworkConnection, TraceContext

NODE = "10.213.250.1"


def _refused(dst: str, port: int, **kw: object) -> Event:
    data = NetworkConnection(
        Protocol="tcp",
        DestinationIp=dst,
        DestinationPort=port,
        SourceIp="10.231.0.6",
        SourcePort=40418,
        decision="denied",
        layer="nftables",
        rule="nftables:default-drop",
    ).model_copy(update=kw)
    return Event(sandbox_id="sb-1", ctx=TraceContext(run_id="r"), data=data)


def test_each_refused_attempt_is_a_line_at_once(tmp_path: Path) -> None:
    fw = NodeFirewall(tmp_path / "fw.log", NODE, background=False)
    try:
        assert (tmp_path / "fw.log").read_text() == HEADER + "\n"
        fw.observe(_refused("198.18.0.33", 3333))
        lines = (tmp_path / "fw.log").read_text().splitlines()  # readable while the file is still open
        assert len(lines) == 2
        f = lines[1].split()
        assert (f[3], f[4], f[5], f[6], f[7], f[12]) == (
            "10.231.0.6",
            "198.18.0.33",
            "40418",
            "3333",
            "6",
            "REJECT",
        )
        # Not on the node's wire: the proxy's own host port, DNS, allowed flows.
        fw.observe(_refused("10.231.0.1", 3128, rule="nftables:host-port"))
        fw.observe(_refused("198.18.0.53", 53, layer="dns"))
        fw.observe(_refused("198.18.0.80", 443, decision="allowed"))
        fw.observe(Event(data=_refused("x", 1).data.model_copy(update={"DestinationIp": None})))
        assert len((tmp_path / "fw.log").read_text().splitlines()) == 2
        [rec] = fw.rejected
        assert (rec.line, rec.sandbox_id, rec.dst_port) == (2, "sb-1", 3333)
    finally:
        fw.close()


def test_background_traffic_and_the_log_parses_as_vpc_flow_logs(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("corral.demo._firewall.BACKGROUND_EVERY_S", 0.05)
    fw = NodeFirewall(tmp_path / "fw.log", NODE, seed=1)
    fw.observe(_refused("198.18.0.22", 22))
    time.sleep(0.3)
    fw.close()
    fw.observe(_refused("198.18.0.22", 22))  # after close: nothing written, nothing raised
    records, stats = read_logs([tmp_path / "fw.log"])
    [st] = stats
    assert st.format == "aws-vpc-flow" and st.malformed == 0 and records.num_rows == len(fw.records) >= 3
    actions = records.column("action").to_pylist()
    assert actions.count("deny") == 1 and actions.count("accept") >= 2
    assert {r.src_ip for r in fw.records if r.action == "ACCEPT"} == {NODE}

"""A generated incident: several runs, many concurrent episodes per node, NAT, clock skew, one bad episode.

The cloud firewall sees only node addresses and translated ports, a few seconds
off the trace's clock. Attribution must name exactly the guilty tool calls
through conntrack's NAT entries, and report a record that only a node address
and a time explain as ambiguous among every call running there.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corral.correlate import CorrelationResult, correlate

T0 = 1795000000.0
NODES = {"node-a": "192.0.2.10", "node-b": "192.0.2.11"}
BAD = "203.0.113.66"
PYPI = "198.51.100.7"
FW_SKEW = 1.5  # the cloud firewall's clock runs ahead of the trainer's
CT_SKEW = 0.3  # conntrack on the node, nearly in step


@dataclass
class Scenario:
    trace: Path
    conntrack: dict[str, Path]
    firewall: Path
    guilty: set[str] = field(default_factory=set)
    guilty_first: str = ""
    udp_alert_time: float = 0.0


def _generate(tmp: Path) -> Scenario:
    rnd = random.Random(7)
    placement = {"r1": "node-a", "r2": "node-a", "r3": "node-b"}
    calls: list[dict[str, object]] = []
    ct_lines: dict[str, list[str]] = {n: [] for n in NODES}
    fw_rows: list[list[object]] = []
    nat_port = {n: 30000 for n in NODES}
    scen = Scenario(tmp / "trace.jsonl", {n: tmp / f"conntrack-{n}.log" for n in NODES}, tmp / "cloudfw.csv")

    def connect(node: str, sb_ip: str, t: float, dst: str, dport: int, bad: bool) -> None:
        nat_port[node] += rnd.randint(1, 7)
        sport, nport = rnd.randint(32768, 60999), nat_port[node]
        node_ip = NODES[node]
        ct_lines[node].append(
            f"[{t + CT_SKEW:.6f}]\t    [NEW] tcp      6 120 SYN_SENT "
            f"src={sb_ip} dst={dst} sport={sport} dport={dport} "
            f"[UNREPLIED] src={dst} dst={node_ip} sport={dport} dport={nport}"
        )
        result, attack = ("drop", "Mining Behavior") if bad else ("pass", "")
        ft = int(t + FW_SKEW)
        fw_rows.append(
            [
                ft,
                "cloudfirewall_access_log",
                attack,
                "out",
                dst,
                dport,
                ft + 1,
                "tcp",
                result,
                node_ip,
                nport,
                ft,
                1234567890123456,
            ]
        )

    for run, node in placement.items():
        for i in range(8):
            ep = f"{run}-e{i}"
            # Sandbox addresses repeat across nodes (per-node address pools); NAT tells them apart.
            sb_ip = f"192.0.2.{100 + i + (0 if run != 'r2' else 8)}"
            for step in range(3):
                t = T0 + step * 120 + i * 0.7
                for turn in range(5):
                    start, end = t, t + 10 + rnd.random() * 4
                    cid = f"{ep}-s{step}-t{turn}"
                    bad = run == "r2" and i == 5 and step == 1 and turn in (3, 4)
                    cmd = f"python miner.py --pool {BAD}:3333" if bad else f"pip install pkg{turn}"
                    calls.append(
                        dict(
                            run_id=run,
                            step=step,
                            episode_id=ep,
                            turn=turn,
                            tool_call_id=cid,
                            sandbox_id=f"sb-{ep}",
                            host=NODES[node],
                            sandbox_ip=sb_ip,
                            start=start,
                            end=end,
                            command=cmd,
                        )
                    )
                    if bad:
                        scen.guilty.add(cid)
                        scen.guilty_first = scen.guilty_first or cid
                        for k in range(4):  # reconnect attempts during the call
                            connect(node, sb_ip, start + 1 + k * 2, BAD, 3333, True)
                    elif turn == 0:
                        connect(node, sb_ip, start + 2, PYPI, 443, False)
                    t = end + 2
    # A UDP alert with no conntrack entry: only node-a's address and a time explain it.
    scen.udp_alert_time = T0 + 120 + 30
    fw_rows.append(
        [
            int(scen.udp_alert_time + FW_SKEW),
            "cloudfirewall_access_log",
            "DNS Tunnel",
            "out",
            "203.0.113.77",
            53,
            int(scen.udp_alert_time + FW_SKEW),
            "udp",
            "alert",
            NODES["node-a"],
            5353,
            int(scen.udp_alert_time + FW_SKEW),
            1234567890123456,
        ]
    )
    # A record from an address no trace knows.
    fw_rows.append(
        [
            int(T0 + 10),
            "cloudfirewall_access_log",
            "",
            "out",
            PYPI,
            443,
            int(T0 + 11),
            "tcp",
            "pass",
            "192.0.2.200",
            40000,
            int(T0 + 10),
            1234567890123456,
        ]
    )
    rnd.shuffle(calls)  # traces arrive in no particular order
    with scen.trace.open("w") as f:
        for c in calls:
            f.write(json.dumps(c) + "\n")
    for node, lines in ct_lines.items():
        scen.conntrack[node].write_text("\n".join(lines) + "\n")
    with scen.firewall.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "__time__",
                "__topic__",
                "attack_type_name_en",
                "direction",
                "dst_ip",
                "dst_port",
                "end_time",
                "ip_protocol",
                "rule_result",
                "src_ip",
                "src_port",
                "start_time",
                "aliuid",
            ]
        )
        w.writerows(fw_rows)
    return scen


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, CorrelationResult]:
    scen = _generate(tmp_path_factory.mktemp("incident"))
    result = correlate([scen.trace], [scen.firewall, *scen.conntrack.values()], skew_s=2.0)
    return scen, result


def test_guilty_calls_found_exactly(scenario: tuple[Scenario, CorrelationResult]) -> None:
    scen, result = scenario
    fw = [a for a in result.attributions if a.format == "alibaba-cloudfirewall" and a.remote_ip == BAD]
    assert len(fw) == 8
    assert all(a.method == "conntrack_nat" and a.candidate_count == 1 for a in fw)
    assert {a.tool_call_id for a in fw} == scen.guilty
    assert {(a.run_id, a.episode_id, a.step) for a in fw} == {("r2", "r2-e5", 1)}
    # The second miner call's records could also be the first call's process still running: the
    # call whose interval holds them wins that tie, at a little less confidence.
    assert all(
        a.confidence == pytest.approx(0.95)
        or (a.tie_break == "inside_interval" and a.confidence == pytest.approx(0.95 * 0.9))
        for a in fw
    )


def test_incident_names_episode_and_first_command(scenario: tuple[Scenario, CorrelationResult]) -> None:
    scen, result = scenario
    certain = [i for i in result.incidents if not i.ambiguous]
    assert [(i.run_id, i.episode_id) for i in certain] == [("r2", "r2-e5")]
    inc = certain[0]
    assert inc.first_tool_call_id == scen.guilty_first
    assert inc.first_command == f"python miner.py --pool {BAD}:3333"
    assert set(inc.tool_call_ids) == scen.guilty
    assert (
        inc.destinations[0].ip == BAD and inc.destinations[0].port == 3333 and inc.destinations[0].count == 8
    )
    assert inc.steps == [1] and inc.severity == "high"
    assert inc.first_time is not None and inc.last_time is not None and inc.first_time <= inc.last_time


def test_node_only_evidence_is_reported_as_ambiguous(scenario: tuple[Scenario, CorrelationResult]) -> None:
    scen, result = scenario
    [udp] = [a for a in result.attributions if a.remote_ip == "203.0.113.77"]
    assert udp.method == "node_time"
    assert udp.tool_call_id is None and udp.episode_id is None and udp.turn is None
    assert udp.candidate_count > 1 and udp.episode_count > 1 and udp.confidence < 0.6 / 2
    # Every candidate ran on node-a around the alert (within the skew window), none on node-b.
    by_id = result.calls_by_id
    t = int(scen.udp_alert_time + FW_SKEW)  # the firewall logs whole seconds
    for cid in udp.candidates:
        c = by_id[cid]
        assert c.host == NODES["node-a"] and c.start - 2 <= t + 1 and c.end + 2 >= t
    [amb] = [i for i in result.incidents if i.ambiguous]
    assert amb.run_id is None and amb.episode_id is None and amb.first_tool_call_id is None
    assert len(amb.candidate_episodes) == udp.episode_count


def test_benign_and_unknown_records(scenario: tuple[Scenario, CorrelationResult]) -> None:
    _, result = scenario
    benign = [a for a in result.attributions if a.format == "alibaba-cloudfirewall" and a.remote_ip == PYPI]
    assert benign and all(a.method == "conntrack_nat" and a.candidate_count == 1 for a in benign)
    assert all(a.action == "accept" for a in benign)
    assert [(u.src_ip, u.dst_ip) for u in result.unattributed] == [("192.0.2.200", PYPI)]
    # Allowed flows alone make no incident.
    assert all(i.episode_id in (None, "r2-e5") for i in result.incidents)


def test_without_skew_allowance_time_only_matches_shrink(tmp_path: Path) -> None:
    scen = _generate(tmp_path)
    strict = correlate([scen.trace], [scen.firewall, *scen.conntrack.values()], skew_s=0.0)
    fw = [a for a in strict.attributions if a.remote_ip == BAD and a.format == "alibaba-cloudfirewall"]
    # NAT evidence carries its own (node) clock, so the guilty calls are still found exactly.
    assert {a.tool_call_id for a in fw} == scen.guilty


def test_trace_without_matching_logs_gives_empty_valid_report(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(
        json.dumps(
            dict(
                tool_call_id="c1",
                run_id="r",
                episode_id="e",
                host="192.0.2.50",
                sandbox_ip="192.0.2.51",
                start=T0,
                end=T0 + 5,
                command="ls",
            )
        )
        + "\n"
    )
    log = tmp_path / "flow.log"
    log.write_text(
        f"2 123456789012 eni-1 192.0.2.99 198.51.100.1 40000 443 6 1 60 {int(T0)} {int(T0) + 5} ACCEPT OK\n"
    )
    result = correlate([trace], [log], skew_s=2)
    rep = result.report()
    assert rep.attributions == [] and rep.incidents == [] and rep.attributed == 0
    assert len(rep.unattributed) == 1 and rep.records == 1 and rep.tool_calls == 1
    again = type(rep).model_validate_json(json.dumps(rep.to_jsonable()))
    assert again == rep

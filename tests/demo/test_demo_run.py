"""``corral demo`` end to end, shortened: the incident's acts blocked, attributed live, the run halted.

Real sandboxes, egress namespaces, nftables, an OpenSSH server and a stratum pool in
namespaces the demo creates; the checks read what the run wrote (event store, flow
log, live attributions) rather than its own summary, and the report in Chromium.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chromium_support import CHROMIUM, FLAGS, screenshot
from corral.demo._agent import MINER, TUNNEL
from corral.demo._range import OUTSIDE_HOST_IP, POOL_IP, POOL_PORT
from corral.events import EventStore, NetworkConnection, PolicyDecision, ToolCall

CORRAL = str(Path(sys.executable).with_name("corral"))
FILES = ("events.db", "trace.jsonl", "node-firewall.flowlog", "live-attributions.jsonl", "correlation.json",
         "summary.json", "policy.yaml", "report.html")  # fmt: skip


def _demo(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [CORRAL, "demo", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=480,
        env=dict(os.environ, COLUMNS="80"),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


class Run:
    """What one demo run left behind, read back independently of its own summary."""

    def __init__(self, out: Path, stdout: str) -> None:
        self.out, self.stdout = out, stdout
        with EventStore(out / "events.db") as s:
            self.events = list(s.query())
        self.calls = [e for e in self.events if isinstance(e.data, ToolCall)]
        self.decisions = [e for e in self.events if isinstance(e.data, PolicyDecision)]
        self.live = [json.loads(ln) for ln in (out / "live-attributions.jsonl").read_text().splitlines()]
        self.log = (out / "node-firewall.flowlog").read_text().splitlines()
        self.summary = json.loads((out / "summary.json").read_text())

    def start_of(self, command: str) -> ToolCall:
        [e] = [e for e in self.calls if isinstance(e.data, ToolCall) and e.data.command == command]
        assert isinstance(e.data, ToolCall)
        return e.data

    def episode_of(self, command: str) -> str | None:
        [e] = [e for e in self.calls if isinstance(e.data, ToolCall) and e.data.command == command]
        return e.ctx.episode_id

    def call_id_of(self, command: str) -> str | None:
        [e] = [e for e in self.calls if isinstance(e.data, ToolCall) and e.data.command == command]
        return e.ctx.tool_call_id

    def halt_time(self) -> float:
        [h] = [e for e in self.decisions if isinstance(e.data, PolicyDecision) and e.data.action == "halt"]
        assert isinstance(h.data, PolicyDecision) and h.data.reason == "attributed_violations"
        return h.time_ns / 1e9


@pytest.fixture(scope="module")
def halted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    out = tmp_path_factory.mktemp("demo") / "run"
    r = _demo(out, "--episodes", "6", "--workers", "4", "--seed", "3")
    yield Run(out, r.stdout)


def test_the_run_writes_everything_and_fits_80_columns(halted: Run) -> None:
    for name in FILES:
        assert (halted.out / name).stat().st_size > 0, name
        assert name in halted.stdout
    long = [ln for ln in halted.stdout.splitlines() if len(ln) > 80]
    assert long == []
    for expected in ("Run summary", "The incident", "s from the first violation to the halt", "Next"):
        assert expected in halted.stdout
    assert "corral demo --episodes 6 --workers 4 --seed 3 --no-halt" in halted.stdout
    # The next commands name this run's store, episodes and report.
    text = halted.stdout.replace(" \\\n", " ")
    store = str(halted.out / "events.db")
    assert f"corral events --store {store} --episode ep-0005" in " ".join(text.split())
    assert "corral correlate --trace" in text and str(halted.out / "report.html") in text


def test_tunnel_and_miner_are_at_their_episodes_and_nothing_got_through(halted: Run) -> None:
    assert (halted.episode_of(TUNNEL.start), halted.episode_of(MINER.start)) == ("ep-0004", "ep-0005")
    denied = {
        (e.data.DestinationIp, e.data.DestinationPort)
        for e in halted.events
        if isinstance(e.data, NetworkConnection) and e.data.decision == "denied"
    }
    assert {(OUTSIDE_HOST_IP, 22), (POOL_IP, POOL_PORT)} <= denied  # the egress refused both
    assert not any(
        isinstance(e.data, NetworkConnection) and e.data.decision == "allowed" for e in halted.events
    )
    assert halted.summary["targets_reached"] == []  # sshd's log and the pool recorded no connection


def test_every_firewall_record_of_an_act_is_attributed_live_to_the_call_that_started_it(halted: Run) -> None:
    by_line = {a["log_line"]: a for a in halted.live}
    for act in (TUNNEL, MINER):
        ip = halted.start_of(act.start).sandbox_ip
        dst = act.destination[0]
        mine = [
            n for n, ln in enumerate(halted.log, 1) if f" {ip} {dst} " in ln and ln.endswith(" REJECT OK")
        ]
        assert len(mine) >= 2, (act.name, ip)
        who = {by_line[n]["tool_call_id"] for n in mine if n in by_line}
        assert who == {halted.call_id_of(act.start)}, (act.name, [by_line.get(n) for n in mine])
        # attributed while the run was going, not afterwards
        assert all(n in by_line for n in mine)
        assert all(0 <= by_line[n]["made"] - float(halted.log[n - 1].split()[10]) < 15 for n in mine)


def test_the_guilty_episodes_are_quarantined_and_a_burst_halts_the_run(halted: Run) -> None:
    quarantined = {
        e.ctx.episode_id
        for e in halted.decisions
        if isinstance(e.data, PolicyDecision)
        and e.data.action == "quarantine"
        and e.data.reason == "attributed_violations"
    }
    assert quarantined <= {"ep-0004", "ep-0005"} and quarantined
    halt = halted.halt_time()
    # Nothing started after the halt (a call already starting may race it by a few ms).
    late = [e for e in halted.calls if isinstance(e.data, ToolCall) and e.data.start_ns / 1e9 > halt + 0.5]
    assert late == []
    seconds = halted.summary["seconds_first_violation_to_halt"]
    assert 0 < seconds < 60 and f"{seconds:.1f} s from the first violation to the halt" in halted.stdout


def test_grader_runs_are_trusted_and_shown_apart(halted: Run) -> None:
    graders = [e for e in halted.calls if isinstance(e.data, ToolCall) and e.data.trusted]
    assert graders and all((e.ctx.tool_call_id or "").startswith("tc-grader-") for e in graders)
    corr = json.loads((halted.out / "correlation.json").read_text())
    assert corr["summary"]["trusted_calls"] == len(graders)


def test_the_report_opens_with_the_story_in_chromium(halted: Run, tmp_path: Path) -> None:
    assert CHROMIUM
    report = halted.out / "report.html"
    p = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln] == []
    dom = p.stdout
    assert dom.index("<h2>The incident</h2>") < dom.index("Timeline of violations")
    story = dom[dom.index("<h2>The incident</h2>") : dom.index("Timeline of violations")]
    for what in ("tunnel episode ep-0004", "miner episode ep-0005", "attributed", "quarantine", "halt"):
        assert what in story, what
    drill = dom[dom.index("<h2>Episodes</h2>") :]  # each guilty episode's calls, with commands and output
    assert "ep-0004" in drill and "ep-0005" in drill and "ssh -F .ssh/config -N ci-cache" in drill
    shot, r = screenshot(report, tmp_path)
    assert r.returncode == 0 and shot.stat().st_size > 20_000


def test_no_halt_shows_what_the_run_would_have_done(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # Twelve episodes: the breaker trips on the run's sixth attributed violation, and with eight
    # the last of them could be attributed after the last call had started (calls are fast).
    r = _demo(out, "--episodes", "12", "--workers", "2", "--seed", "3", "--no-halt")
    run = Run(out, r.stdout)
    halt = run.halt_time()  # the breaker tripped ...
    starts = [e.data.start_ns / 1e9 for e in run.calls if isinstance(e.data, ToolCall)]
    # ... and the run went on: calls started after it (how many, and of which episodes, depends on
    # the workers' timing: with fast calls every episode may have begun before the trip)
    assert any(t > halt for t in starts), (halt, max(starts))
    assert run.summary["episodes_never_started"] == 0 and run.summary["halt_obeyed"] is False
    assert run.summary["after_trip"]["calls"] > 0 and "after the trip:" in r.stdout
    assert {e.ctx.episode_id for e in run.calls} == {f"ep-{i:04d}" for i in range(12)}
    assert "--no-halt" in r.stdout and "--seed 3 --no-halt" not in r.stdout

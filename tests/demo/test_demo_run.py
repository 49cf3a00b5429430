"""``corral demo`` end to end, shortened: the RL loop, its outputs, and its report in Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from chromium_support import screenshot

CORRAL = str(Path(sys.executable).with_name("corral"))


def test_demo_runs_end_to_end_and_its_report_opens(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = subprocess.run(
        [CORRAL, "demo", "--episodes", "16", "--workers", "4", "--misbehave-rate", "0.5", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, COLUMNS="160"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("events.db", "trace.jsonl", "node-firewall.flowlog", "correlation.json", "report.html"):
        assert (out / name).stat().st_size > 0, name
        assert str(out / name) in r.stdout
    assert "Run summary" in r.stdout and "Guilty episodes and commands" in r.stdout

    traces = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    assert len({t["episode_id"] for t in traces}) == 16
    assert all(t["run_id"] and t["tool_call_id"] and t["start"] <= t["end"] for t in traces)

    report = json.loads((out / "correlation.json").read_text())
    assert report["records"] > 0 and report["tool_calls"] == len(traces)
    # Every firewall record of a misbehaving call is attributed, and whenever an attribution names one
    # call, that call's command names the destination the firewall saw.
    calls = {t["tool_call_id"]: t for t in traces}
    exact = [a for a in report["attributions"] if a["tool_call_id"]]
    assert exact, "the seeded run has misbehaving calls that dial out"
    for a in exact:
        assert a["method"] == "node_time_command"
        assert a["remote_ip"] in calls[a["tool_call_id"]]["command"]
    assert report["incidents"], "misbehaving episodes make incidents"

    shot, rendered = screenshot(out / "report.html", tmp_path)
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert shot.stat().st_size > 20_000 and rendered.console == []

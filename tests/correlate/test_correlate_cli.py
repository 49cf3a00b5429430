"""``corral correlate``: the command's outputs and errors, through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import stix2

from corral.cli._correlate import parse_duration
from corral.errors import InputError

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"
CORRAL = [str(Path(sys.executable).parent / "corral")]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CORRAL, "correlate", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_json_html_stix_outputs(tmp_path: Path) -> None:
    out_json, out_html, out_stix = tmp_path / "c.json", tmp_path / "c.html", tmp_path / "c.stix.json"
    proc = _run(
        "--trace", str(LOGS / "trace_basic.jsonl"),
        "--log", str(LOGS / "alibaba_cloudfirewall.csv"),
        "--log", str(LOGS / "conntrack_events.log"),
        "--log", str(LOGS / "aws_v2_default.log"),
        "--skew", "1500ms",
        "--json", str(out_json), "--html", str(out_html), "--stix", str(out_stix),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "INC-0001" in proc.stdout and "malformed" in proc.stdout
    doc = json.loads(out_json.read_text())
    assert doc["skew_s"] == 1.5
    keys = {"log_file", "log_line", "run_id", "episode_id", "step", "turn"}
    keys |= {"tool_call_id", "method", "confidence", "candidates"}
    assert doc["attributions"] and all(keys <= a.keys() for a in doc["attributions"])
    fw = next(a for a in doc["attributions"] if a["log_file"].endswith("alibaba_cloudfirewall.csv"))
    assert (fw["log_line"], fw["tool_call_id"], fw["method"], fw["episode_id"]) == (
        2,
        "c2",
        "conntrack_nat",
        "e1",
    )
    assert doc["incidents"][0]["first_tool_call_id"] == "c2"
    assert out_html.read_text().startswith("<!DOCTYPE html>")
    assert stix2.parse(out_stix.read_text()).type == "bundle"


def test_redact_and_json_to_stdout(tmp_path: Path) -> None:
    proc = _run("--trace", str(LOGS / "trace_basic.jsonl"), "--log", str(LOGS / "aws_v2_default.log"),
                "--json", "-", "--redact")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # the summary goes to stderr when JSON is on stdout
    text = json.dumps(doc)
    assert "192.0.2.101" not in text and "123456789012" not in text and "203.0.113.50" in text


def test_generic_mapping_and_format_options(tmp_path: Path) -> None:
    proc = _run(
        "--trace", str(LOGS / "trace_basic.jsonl"), "--log", str(LOGS / "generic_custom.csv"),
        "--map", "start=when,src_ip=from,dst_ip=to",
        "--map", "src_port=from_port", "--map", "dst_port=to_port",
        "--map", "action=verdict", "--json", str(tmp_path / "g.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "g.json").read_text())
    first, later = doc["attributions"]
    assert (first["tool_call_id"], first["timing"]) == ("c2", "inside")
    # Ten seconds after the episode's last call ended: a process it left running, episode certain.
    assert (later["episode_id"], later["tool_call_id"], later["timing"]) == ("e1", None, "after")
    assert later["candidates"] == ["c1", "c2"] and "left running" in later["evidence"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log", str(LOGS / "generic_custom.csv")], "log format not recognised"),
        (["--log", str(LOGS / "aws_v2_default.log"), "--skew", "soon"], "not a duration"),
        (["--log", str(LOGS / "aws_v2_default.log"), "--format", "splunk"], "unknown log format"),
        (["--log", "/nonexistent/x.log"], "no such log file"),
    ],
)
def test_errors_exit_2_with_message(args: list[str], message: str) -> None:
    proc = _run("--trace", str(LOGS / "trace_basic.jsonl"), *args)
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.parametrize(
    ("text", "seconds"), [("2s", 2.0), ("500ms", 0.5), ("1.5m", 90.0), ("3", 3.0), ("1h", 3600.0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_garbage() -> None:
    with pytest.raises(InputError):
        parse_duration("-2s")


def test_list_formats_needs_no_other_option() -> None:
    proc = _run("--list-formats")
    assert proc.returncode == 0, proc.stderr
    names = [ln.split()[0] for ln in proc.stdout.splitlines()]
    assert "aws-vpc-flow" in names and "suricata-eve" in names and len(names) == 12


def test_missing_trace_or_log_is_an_error() -> None:
    proc = _run("--log", str(LOGS / "aws_v2_default.log"))
    assert proc.returncode == 2 and "--trace" in proc.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is a log (AWS VPC Flow Logs), not a trace: give it with --log"),
        ('not json\n{"also": "bad"\n', "no usable tool call in this trace: 2 malformed lines"),
        ("", "no tool call in this trace"),
    ],
)
def test_a_trace_without_usable_calls_is_an_error(tmp_path: Path, content: str | None, message: str) -> None:
    trace = LOGS / "aws_v2_default.log" if content is None else tmp_path / "t.jsonl"
    if content is not None:
        trace.write_text(content)
    proc = _run("--trace", str(trace), "--log", str(LOGS / "aws_v2_default.log"))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_format_not_recognised_names_the_formats_and_the_option() -> None:
    proc = _run("--trace", str(LOGS / "trace_basic.jsonl"), "--log", str(LOGS / "generic_custom.csv"))
    assert proc.returncode == 2
    err = " ".join(proc.stderr.split())
    assert "log format not recognised" in err and "aws-vpc-flow" in err and "zeek-conn" in err
    assert "--format" in err

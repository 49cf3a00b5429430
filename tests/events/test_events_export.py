"""Exporters: JSON lines, Parquet, OCSF, OpenTelemetry."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corral.events import (
    Alert,
    DnsQuery,
    Event,
    EventStore,
    Level,
    NetworkConnection,
    ProcessExit,
    ProcessStart,
    ToolCall,
    TraceContext,
    export_events,
    export_spans,
    parse_time_ns,
    rfc3339_ns,
    to_ocsf,
)

CTX = TraceContext(run_id="r1", step=5, episode_id="e2", turn=1, tool_call_id="call-1")
T0 = 1_714_564_800_123_456_789

PAYLOADS = [
    ProcessStart(
        ProcessId=10, ParentProcessId=9, Image="/usr/bin/curl", CommandLine="curl x", argv=["curl", "x"]
    ),
    ProcessExit(ProcessId=10, Image="/usr/bin/curl", exit_code=7, cpu_time_s=0.01),
    NetworkConnection(Protocol="tcp", DestinationIp="192.0.2.10", DestinationPort=443, decision="denied"),
    DnsQuery(QueryName="pool.example", decision="denied"),
    Alert(rule_id="corral-1", title="Miner", level=Level.high, category="process", tags=["attack.t1496"]),
    ToolCall(command="curl x", start_ns=T0, end_ns=T0 + 10**9, exit_code=7),
]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "e.db"
    with EventStore(path) as s:
        for i, p in enumerate(PAYLOADS):
            s.append(Event(time_ns=T0 + i, host="node1", sandbox_id="sb1", ctx=CTX, data=p))
        s.append(Event(time_ns=T0 + 100, sandbox_id="sb2", data=PAYLOADS[0]))
    return path


@pytest.mark.parametrize(
    ("payload", "class_uid", "activity_id"),
    [
        (PAYLOADS[0], 1007, 1),
        (PAYLOADS[1], 1007, 2),
        (PAYLOADS[2], 4001, 5),
        (PAYLOADS[3], 4003, 1),
        (PAYLOADS[4], 2004, 1),
        (PAYLOADS[5], 0, 99),
    ],
)
def test_ocsf_classes(payload: object, class_uid: int, activity_id: int) -> None:
    rec = to_ocsf(Event(time_ns=T0, sandbox_id="sb1", ctx=CTX, data=payload))  # type: ignore[arg-type]
    assert (rec["class_uid"], rec["activity_id"]) == (class_uid, activity_id)
    assert rec["type_uid"] == class_uid * 100 + activity_id
    assert rec["time"] == T0 // 1_000_000 and rec["metadata"]["correlation_uid"] == "call-1"
    assert rec["unmapped"]["corral"]["episode_id"] == "e2"
    json.dumps(rec)


def test_ocsf_fields() -> None:
    p = to_ocsf(Event(ctx=CTX, data=PAYLOADS[0]))
    assert p["process"]["cmd_line"] == "curl x" and p["process"]["file"]["name"] == "curl"
    n = to_ocsf(Event(ctx=CTX, data=PAYLOADS[2]))
    assert n["dst_endpoint"] == {"ip": "192.0.2.10", "port": 443} and n["disposition_id"] == 2
    a = to_ocsf(Event(ctx=CTX, data=PAYLOADS[4]))
    assert a["severity_id"] == 4 and a["finding_info"]["attacks"][0]["technique"]["uid"] == "T1496"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2024-05-01T12:00:00Z", 1_714_564_800 * 10**9),
        ("2024-05-01T12:00:00.5+00:00", 1_714_564_800 * 10**9 + 5 * 10**8),
        ("2024-05-01 14:00:00+02:00", 1_714_564_800 * 10**9),
        ("1714564800", 1_714_564_800 * 10**9),
        ("1714564800.25", 1_714_564_800 * 10**9 + 25 * 10**7),
    ],
)
def test_time_parsing(text: str, ns: int) -> None:
    assert parse_time_ns(text) == ns


def test_rfc3339() -> None:
    assert rfc3339_ns(T0) == "2024-05-01T12:00:00.123456789Z"


def test_otel_spans(store: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with EventStore(store) as s:
        assert export_spans(s.query(), provider) == 1
    (span,) = exporter.get_finished_spans()
    assert span.start_time == T0 and span.end_time == T0 + 10**9
    assert span.attributes is not None and span.attributes["corral.episode_id"] == "e2"
    assert {e.name for e in span.events} >= {"process_start", "alert", "network_connection"}


def test_tool_call_output_reaches_every_export(tmp_path: Path) -> None:
    call = ToolCall(
        command="pytest -q",
        start_ns=T0,
        end_ns=T0 + 1,
        exit_code=1,
        stdout="1 failed\n" + "x" * 70_000,
        stderr="warn\n",
    )
    with EventStore(tmp_path / "e.db") as s:
        s.append(Event(time_ns=T0, sandbox_id="sb1", ctx=CTX, data=call))
        s.flush()
        for fmt in ("jsonl", "ocsf", "parquet"):
            assert export_events(s.query(), fmt, tmp_path / f"out.{fmt}") == 1
    (line,) = (tmp_path / "out.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["stdout"].startswith("1 failed\n") and len(rec["stdout"]) == 64 * 1024
    assert (rec["stdout_truncated"], rec["stderr"], rec["stderr_truncated"]) == (True, "warn\n", False)
    (ocsf_line,) = (tmp_path / "out.ocsf").read_text().splitlines()
    data = json.loads(ocsf_line)["unmapped"]["corral"]["data"]  # OCSF has no field for a call's output
    assert data["stdout_truncated"] is True and data["stderr"] == "warn\n"
    payload = json.loads(pq.read_table(tmp_path / "out.parquet").column("data")[0].as_py())
    assert payload["stdout"] == rec["stdout"] and payload["stdout_truncated"] is True

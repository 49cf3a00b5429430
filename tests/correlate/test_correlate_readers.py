"""Log readers: detection from content, normalised records, malformed lines counted, never fatal."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from corral.correlate import (
    LineReader,
    LogRecord,
    ReadStats,
    detect_format,
    iter_log,
    log_formats,
    make_reader,
)
from corral.errors import InputError, RegistryError

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"
T = 1795000000
SB, NODE, BAD = "192.0.2.101", "192.0.2.10", "203.0.113.50"


def _read(name: str, **reader: Any) -> tuple[ReadStats, list[dict[str, Any]]]:
    rd = make_reader(reader.pop("format"), **reader) if reader else None
    stats, batches = iter_log(LOGS / name, rd)
    rows = [r for b in batches for r in b.to_pylist()]
    return stats, rows


# file, detected format, records, malformed, fields of the first record
CASES: list[tuple[str, str, int, int, dict[str, Any]]] = [
    (
        "aws_v2_default.log",
        "aws-vpc-flow",
        2,
        2,
        dict(
            line=1,
            src_ip=SB,
            src_port=40312,
            dst_ip=BAD,
            dst_port=3333,
            proto="tcp",
            action="deny",
            start=T + 21.0,
            end=T + 24.0,
            bytes=1840,
            packets=12,
            detail="account=123456789012",
        ),
    ),
    (
        "aws_v5_custom.log.gz",
        "aws-vpc-flow",
        2,
        1,
        dict(line=2, src_ip=NODE, dst_ip=BAD, dst_port=3333, direction="out", reporter="i-0a1b2c3d4e5f60001"),
    ),
    (
        "alibaba_vpc_flow.jsonl",
        "alibaba-vpc-flow",
        1,
        2,
        dict(line=1, src_ip=SB, dst_port=3333, action="deny", direction="out", reporter="i-2zeexample01"),
    ),
    (
        "alibaba_cloudfirewall.csv",
        "alibaba-cloudfirewall",
        2,
        1,
        dict(
            line=2,
            kind="alert",
            src_ip=NODE,
            src_port=61001,
            dst_ip=BAD,
            action="deny",
            signature="Mining Behavior",
            severity="high",
        ),
    ),
    (
        "gcp_vpc.jsonl",
        "gcp-vpc",
        2,
        1,
        dict(line=1, src_ip=SB, dst_ip=BAD, start=T + 21.0, end=T + 24.0, bytes=1840, reporter="node-a"),
    ),
    ("azure_nsg_v2.json", "azure-nsg-flow", 3, 1, dict(src_ip=SB, dst_port=3333, action="deny", proto="tcp")),
    (
        "netfilter_syslog.log",
        "netfilter",
        2,
        1,
        dict(
            line=1,
            src_ip=SB,
            dst_port=3333,
            action="deny",
            signature="CORRAL-DROP",
            reporter="node-a",
            start=T + 22.0,
        ),
    ),
    (
        "conntrack_events.log",
        "conntrack",
        3,
        1,
        dict(
            kind="conntrack",
            src_ip=SB,
            src_port=40312,
            reply_dst_ip=NODE,
            reply_dst_port=61001,
            reply_src_ip=BAD,
            detail="event=NEW",
        ),
    ),
    (
        "suricata_eve.json",
        "suricata-eve",
        4,
        1,
        dict(
            kind="alert",
            src_ip=NODE,
            dst_port=3333,
            signature="ET POLICY Cryptocurrency Miner Checkin",
            severity="high",
            reporter="sensor-a",
        ),
    ),
    ("zeek_conn.log", "zeek-conn", 2, 1, dict(line=9, src_ip=NODE, dst_ip=BAD, bytes=180, packets=3)),
    ("zeek_conn.json", "zeek-conn", 1, 1, dict(line=1, src_ip=NODE, dst_port=3333)),
    (
        "falco_alerts.jsonl",
        "falco",
        2,
        1,
        dict(
            kind="alert",
            src_ip=SB,
            src_port=40312,
            dst_ip=BAD,
            dst_port=3333,
            workload="sb-e1",
            severity="medium",
        ),
    ),
    (
        "hubble_flows.json",
        "hubble",
        2,
        1,
        dict(
            src_ip=SB,
            dst_port=3333,
            action="deny",
            signature="POLICY_DENIED",
            workload="sb-e1",
            direction="out",
        ),
    ),
]


@pytest.mark.parametrize(("name", "fmt", "n", "bad", "first"), CASES, ids=[c[0] for c in CASES])
def test_reader_detects_and_normalises(name: str, fmt: str, n: int, bad: int, first: dict[str, Any]) -> None:
    assert detect_format(LOGS / name).name == fmt
    stats, rows = _read(name)
    assert (stats.format, stats.records, stats.malformed) == (fmt, n, bad)
    assert len(rows) == n
    assert len(stats.samples) == bad and all(s.reason for s in stats.samples)
    for key, value in first.items():
        assert rows[0][key] == value, key
    assert all(r["file"] == str(LOGS / name) for r in rows)


def test_suricata_dns_and_tls_details() -> None:
    _, rows = _read("suricata_eve.json")
    assert [r["kind"] for r in rows] == ["alert", "flow", "dns", "tls"]
    assert rows[1]["bytes"] == 180 and rows[1]["action"] == "accept"
    assert rows[2]["detail"] == "dns=pool.mining.example"
    assert rows[3]["detail"] == "sni=pypi.example"


def test_azure_v2_counters_summed_and_v1_begin_tuple_has_none() -> None:
    _, rows = _read("azure_nsg_v2.json")
    assert rows[0]["bytes"] is None  # state B: no counters
    assert rows[2]["bytes"] == 5000 + 9000 and rows[2]["packets"] == 38 and rows[2]["action"] == "accept"


def test_aws_custom_fields_without_header() -> None:
    fields = ["srcaddr", "dstaddr", "srcport", "dstport", "protocol", "start", "end", "action"]
    stats, _ = _read("aws_v2_default.log", format="aws-vpc-flow", fields=fields)
    # Every line has the wrong field count for this custom order.
    assert stats.records == 0 and stats.malformed == 5


def test_aws_vectorised_path_matches_line_path(tmp_path: Path) -> None:
    lines = [
        f"2 123456789012 eni-0001 192.0.2.{i % 200} 203.0.113.{i % 50} {40000 + i} 443 6 3 180 "
        f"{T + i} {T + i + 5} "
        f"{'ACCEPT' if i % 3 else 'REJECT'} OK"
        for i in range(1000)
    ]
    lines[500] = "2 broken"
    p = tmp_path / "flow.log.gz"
    with gzip.open(p, "wt") as f:
        f.write("\n".join(lines) + "\n")
    reader = make_reader("aws-vpc-flow")
    fast = ReadStats(file=str(p))
    fast_rows = [r for b in reader.read(p, fast) for r in b.to_pylist()]
    slow = ReadStats(file=str(p))
    assert isinstance(reader, LineReader)
    slow_rows = [r for b in LineReader.read(reader, p, slow) for r in b.to_pylist()]
    assert fast_rows == slow_rows and len(fast_rows) == 999
    assert (fast.malformed, slow.malformed) == (1, 1) and fast.samples[0].line == slow.samples[0].line == 501


def test_generic_reader_needs_mapping_for_unknown_columns() -> None:
    with pytest.raises(InputError, match="not recognised"):
        detect_format(LOGS / "generic_custom.csv")
    mapping = {
        "start": "when",
        "src_ip": "from",
        "dst_ip": "to",
        "src_port": "from_port",
        "dst_port": "to_port",
        "action": "verdict",
        "reporter": "node",
    }
    stats, rows = _read("generic_custom.csv", format="generic", mapping=mapping)
    assert (stats.records, stats.malformed) == (2, 1)
    assert rows[0]["action"] == "deny" and rows[0]["start"] == T + 22.0 and rows[1]["action"] == "accept"
    with pytest.raises(InputError, match="unknown record fields"):
        make_reader("generic", mapping={"nope": "x"})


def test_generic_reader_detects_common_column_names(tmp_path: Path) -> None:
    p = tmp_path / "g.jsonl"
    p.write_text(
        '{"timestamp": 1795000022, "src_ip": "192.0.2.1", "dst_ip": "203.0.113.9", "dst_port": 22}\n'
    )
    assert detect_format(p).name == "generic"


def test_unknown_format_name_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="unknown log format 'splunk'"):
        make_reader("splunk")


def test_registry_lists_every_format() -> None:
    assert set(log_formats()) == {
        "aws-vpc-flow",
        "alibaba-vpc-flow",
        "alibaba-cloudfirewall",
        "gcp-vpc",
        "azure-nsg-flow",
        "netfilter",
        "conntrack",
        "suricata-eve",
        "zeek-conn",
        "falco",
        "hubble",
        "generic",
    }


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="empty"):
        detect_format(empty)
    with pytest.raises(InputError, match="no such log file"):
        iter_log(tmp_path / "missing.log")


def test_binary_garbage_is_counted_not_fatal(tmp_path: Path) -> None:
    p = tmp_path / "mixed.json"
    good = (LOGS / "suricata_eve.json").read_text().splitlines()[0]
    p.write_bytes(good.encode() + b"\n\xff\xfe\x00garbage\n" + good.encode() + b"\n")
    stats, rows = _read(str(p))
    assert len(rows) == 2 and stats.malformed == 1


def test_log_record_fields_match_schema() -> None:
    from corral.correlate import RECORD_SCHEMA

    assert [f for f in LogRecord.__dataclass_fields__] == RECORD_SCHEMA.names

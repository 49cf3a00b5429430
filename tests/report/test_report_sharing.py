"""Sharing: redaction with stable pseudonyms, and the STIX 2.1 bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import stix2

from corral.correlate import CorrelationReport, correlate
from corral.report import Redactor, redact_report, redactor_for, render_correlation_html, stix_bundle

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"


@pytest.fixture(scope="module")
def report() -> CorrelationReport:
    logs = [p for p in sorted(LOGS.iterdir()) if not p.name.startswith(("trace", "generic"))]
    return correlate([LOGS / "trace_basic.jsonl"], logs, skew_s=2).report()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connect 10.1.2.3:443", "connect int-ip-1:443"),
        ("from 172.20.0.5 and 192.168.1.9", "from int-ip-1 and int-ip-2"),
        ("fd00::1 is internal", "int-ip-1 is internal"),
        ("203.0.113.5 stays", "203.0.113.5 stays"),
        ("account=123456789012 vpc", "account=account-1 vpc"),
        ("owner 123456789012", "owner account-1"),
        ("aliuid=1234567890123456", "aliuid=account-1"),
        ("on i-0a1b2c3d4e5f60001 via eni-0a1b2c3d", "on host-1 via host-2"),
        ("pay 0x52908400098527886E0F7030069857D2E4169EE7 now", "pay wallet-1 now"),
        (
            "xmrig -u 48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVs"
            "aSWJ4fhdUyZijBGUicoD",
            "xmrig -u wallet-1",
        ),
        ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "wallet-1"),
        ("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "export AWS_ACCESS_KEY_ID=secret-1"),
        (
            "curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc'",
            "curl -H 'Authorization: Bearer secret-1'",
        ),
        ("mysql --password=hunter2 db", "mysql --password=secret-1 db"),
        ("git clone https://bob:s3cr3t@git.example/x", "git clone https://secret-1@git.example/x"),
        ("token: ghp_abcdefghijklmnopqrstuvwxyz0123456789AB", "token: secret-1"),
    ],
)
def test_redaction_cases(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


def test_pseudonyms_are_stable_and_distinct() -> None:
    r = Redactor(internal=["192.0.2.10"], names=["node-a"])
    a = r.text("192.0.2.10 node-a 10.0.0.1")
    b = r.text("10.0.0.1 then 192.0.2.10 on node-a")
    assert a == "int-ip-1 host-1 int-ip-2"
    assert b == "int-ip-2 then int-ip-1 on host-1"
    assert r.apply({"10.0.0.1": ["node-a", 3, None]}) == {"int-ip-2": ["host-1", 3, None]}


def test_redacted_report_leaks_nothing_internal(report: CorrelationReport) -> None:
    red = redact_report(report, redactor_for(report))
    text = json.dumps(red.to_jsonable())
    for secret in (
        "192.0.2.101",
        "192.0.2.102",
        '192.0.2.10"',
        "123456789012",
        "node-a",
        "sb-e1",
        "eni-0a1b2c3d",
    ):
        assert secret not in text, secret
    assert "203.0.113.50" in text  # the outside endpoint is what the receiver acts on
    # Same pseudonym everywhere it appears.
    a = red.attributions[0]
    assert a.src_ip is not None and a.src_ip.startswith("int-ip-")
    html = render_correlation_html(red)
    assert "192.0.2.101" not in html and "node-a" not in html
    assert red.incidents[0].first_command is not None


def test_stix_bundle(report: CorrelationReport) -> None:
    bundle = stix_bundle(report)
    parsed = stix2.parse(bundle.serialize(), allow_custom=False)
    kinds = [o["type"] for o in parsed.objects]
    assert kinds.count("identity") == 1
    indicators = [o for o in parsed.objects if o["type"] == "indicator"]
    assert any("203.0.113.50" in i.pattern and "dst_port = 3333" in i.pattern for i in indicators)
    incidents_with_dest = [i for i in report.incidents if any(d.ip for d in i.destinations)]
    observed = [o for o in parsed.objects if o["type"] == "observed-data"]
    assert len(observed) == len(incidents_with_dest)
    sightings = [o for o in parsed.objects if o["type"] == "sighting"]
    assert sightings and all(s.observed_data_refs[0] in {o.id for o in observed} for s in sightings)
    # Internal addresses never become indicators.
    assert not any("192.0.2.101" in i.pattern for i in indicators)


def test_stix_of_redacted_report_has_no_internal_addresses(report: CorrelationReport) -> None:
    red = redact_report(report)
    text = stix_bundle(red).serialize()
    assert "192.0.2.101" not in text and "203.0.113.50" in text

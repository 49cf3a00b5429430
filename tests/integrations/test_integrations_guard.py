"""The Guard over real sandboxes: penalties, quarantine, decisions in the store, the circuit breaker."""

from __future__ import annotations

from pathlib import Path

import pytest
from integrations_support import BAD, MEDIUM, make_policy

from corral.errors import CircuitBreakerTripped
from corral.events import EventStore
from corral.integrations import Guard, extract_command


def test_episode_penalty_quarantine_and_events(guard: Guard, store: EventStore) -> None:
    logged: list[dict[str, float]] = []
    guard.responder._loggers.append(lambda m, s: logged.append(dict(m)))
    with guard.episode("ep1", step=4) as ep:
        ok = ep.call("echo hello")
        assert ok.result.stdout == "hello\n" and ok.penalty == 0 and not ok.quarantined
        med = ep.call(MEDIUM)
        assert med.result.exit_code == 0 and med.penalty == pytest.approx(0.5) and not med.quarantined
        bad = ep.call(BAD)
        assert bad.result.blocked and bad.penalty == pytest.approx(1.0) and bad.quarantined
        assert [a.category for a in bad.result.alerts] == ["credential_access"]
        assert "blocked by policy" in bad.observation
    s = ep.summary
    # the medium rule may fire twice (before the call and on the observed exec): count categories, not hits
    assert (s.calls, s.blocked_calls, s.quarantined) == (3, 1, True)
    assert set(s.alerts_by_category) == {"recon", "credential_access"} and s.alerts >= 2
    assert s.penalty == pytest.approx(1.5)
    assert logged[0]["corral/penalty"] == pytest.approx(1.5)
    store.flush()
    decisions = [(e.ctx.turn, e.data.action) for e in store.query(run_id="run-test", type="policy_decision")]
    assert (1, "penalty") in decisions and (2, "quarantine") in decisions and (2, "block") in decisions
    alerts = list(store.query(episode_id="ep1", type="alert"))
    assert {a.ctx.step for a in alerts} == {4}


@pytest.mark.parametrize("action", ["halt", "raise"])
def test_circuit_breaker_trips_at_threshold(tmp_path: Path, action: str) -> None:
    policy = make_policy().with_overrides(
        response={"circuit_breaker": {"min_level": "high", "threshold": 3, "window_s": 60, "action": action}}
    )
    with Guard(policy, run_id="run-cb") as guard:
        eps = [guard.episode(f"e{i}") for i in range(4)]
        for ep in eps[:2]:
            ep.call(BAD)
            assert not guard.halted
        if action == "raise":
            with pytest.raises(CircuitBreakerTripped, match="threshold 3"):
                eps[2].call(BAD)
            assert not guard.halted
        else:
            r = eps[2].call(BAD)
            assert r.verdict.halted and r.truncated and guard.halted
            later = eps[3].call("echo never-runs")
            assert later.result.blocked and later.truncated and later.quarantined
            assert later.result.block_reason == "run halted by the circuit breaker"
        for ep in eps:
            ep.close()


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("I will look.\n<bash>ls -la</bash>", "ls -la"),
        ("```bash\npytest -q\n```", "pytest -q"),
        ("The answer is 42.", None),
        ("<bash>  </bash>", None),
    ],
)
def test_extract_command(text: str, command: str | None) -> None:
    assert extract_command(text) == command

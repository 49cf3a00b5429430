"""The Guard over real sandboxes, sync and async: penalties, quarantine, decisions in the store, the
circuit breaker, the neutral text for the agent, no thread per call in async episodes, shared guards."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from integrations_support import BAD, MEDIUM, make_guard, make_policy, names_no_rule

import corral
from corral.errors import CircuitBreakerTripped, InputError
from corral.events import EventStore
from corral.harness import Harness
from corral.integrations import EPISODE_OVER, Guard, GuardConfig, extract_command, shared_guard


def test_guard_is_exported_at_the_top() -> None:
    assert corral.Guard is Guard


def test_episode_penalty_quarantine_and_events(guard: Guard, store: EventStore) -> None:
    logged: list[dict[str, float]] = []
    guard.responder._loggers.append(lambda m, s: logged.append(dict(m)))
    with guard.episode("ep1", step=4) as ep:
        assert guard.open_episodes == 1
        ok = ep.run("echo hello")
        assert ok.result.stdout == "hello\n" and ok.penalty == 0 and not ok.quarantined
        assert ok.observation == "hello\n"
        med = ep.run(MEDIUM)
        assert med.result.exit_code == 0 and med.penalty == pytest.approx(0.5) and not med.quarantined
        bad = ep.run(BAD)
        assert bad.result.blocked and bad.penalty == pytest.approx(1.0) and bad.quarantined
        assert [a.category for a in bad.result.alerts] == ["credential_access"]
        # The agent is told the call did not run, never which rule stopped it.
        assert "not run" in bad.observation and names_no_rule(bad.observation + med.observation)
    assert guard.open_episodes == 0
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


def test_async_episode_same_verdicts(guard: Guard) -> None:
    async def episode() -> tuple[list[str], float, bool]:
        async with guard.async_episode("aep1", step=2) as ep:
            reports = [await ep.run(c) for c in ("echo hi", MEDIUM, BAD)]
            return [r.observation for r in reports], ep.penalty, ep.quarantined

    obs, penalty, quarantined = asyncio.run(episode())
    assert obs[0] == "hi\n" and penalty == pytest.approx(1.5) and quarantined
    assert names_no_rule("".join(obs))
    assert guard.open_episodes == 0


def test_async_episodes_run_concurrently_without_threads(store: EventStore) -> None:
    """Many async episodes in one loop overlap their calls; no worker thread is started per call."""
    n = 12
    with make_guard(store) as guard:

        async def one(i: int) -> float:
            async with guard.async_episode(f"c{i}") as ep:
                await ep.run("true")  # sandbox built and warm
                t0 = time.monotonic()
                await ep.run("sleep 1")
                return time.monotonic() - t0

        async def main() -> tuple[float, int]:
            threads_before = threading.active_count()
            t0 = time.monotonic()
            await asyncio.gather(*(one(i) for i in range(n)))
            return time.monotonic() - t0, threading.active_count() - threads_before

        wall, extra_threads = asyncio.run(main())
        assert guard.open_episodes == 0
    # Serialised, 12 one-second calls take 12 s; concurrent, about 1 s plus sandbox set-up.
    assert wall < n / 2, wall
    assert extra_threads < n, extra_threads


def test_policy_truncation_refuses_later_calls(store: EventStore) -> None:
    guard = make_guard(store, response={"end_episode": {"min_level": "high"}})
    with guard, guard.episode("t1") as ep:
        bad = ep.run(BAD)
        assert bad.truncated and ep.truncated
        later = ep.run("echo after")
        assert later.result.blocked and later.truncated and later.observation == EPISODE_OVER
        assert later.result.stdout == "" and later.penalty == 0.0


@pytest.mark.parametrize("action", ["halt", "raise"])
def test_circuit_breaker_trips_at_threshold(tmp_path: Path, action: str) -> None:
    policy = make_policy(
        response={"circuit_breaker": {"min_level": "high", "threshold": 3, "window_s": 60, "action": action}}
    )
    with Guard(policy, run_id="run-cb", store=None) as guard:
        eps = [guard.episode(f"e{i}") for i in range(4)]
        for ep in eps[:2]:
            ep.run(BAD)
            assert not guard.halted
        if action == "raise":
            with pytest.raises(CircuitBreakerTripped, match="threshold 3"):
                eps[2].run(BAD)
            assert not guard.halted
        else:
            r = eps[2].run(BAD)
            assert r.verdict.halted and r.truncated and guard.halted
            later = eps[3].run("echo never-runs")
            assert later.result.blocked and later.truncated and later.quarantined
            assert later.result.block_reason == "run halted by the circuit breaker"
            assert later.observation == EPISODE_OVER
        for ep in eps:
            ep.close()
        assert guard.open_episodes == 0


def test_guard_store_path_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    with Guard(make_policy(), run_id="r-default") as guard:  # default: $CORRAL_HOME/events.db
        with guard.episode("d1") as ep:
            ep.run("true")
        assert guard.store is not None
        default_path = Path(guard.store.path)
    assert default_path == tmp_path / "home" / "events.db"
    with Guard(make_policy(), run_id="r-path", store=str(tmp_path / "g.db")) as g2, g2.episode("d2") as ep:
        ep.run(BAD)
    with EventStore(tmp_path / "g.db") as s:
        assert list(s.query(run_id="r-path", type="policy_decision"))


def test_shared_guard_one_per_config(tmp_path: Path) -> None:
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(f"detection:\n  rule_paths: [{Path(__file__).parent / 'rules'}]\n")
    cfg = GuardConfig(policy=str(policy_file), run_id="shared-1", store=None)
    g1 = shared_guard(cfg)
    assert shared_guard(GuardConfig.model_validate(cfg.model_dump())) is g1
    assert shared_guard(GuardConfig(run_id="shared-2", store=None)) is not g1
    with g1.episode() as ep:
        assert ep.run(BAD).quarantined  # the policy file's rules are loaded
    with pytest.raises(InputError, match=r"verl tool config: polcy: Extra inputs are not permitted"):
        GuardConfig.from_mapping({"polcy": "x.yaml"}, where="verl tool config")


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


def test_factory_guard_records_its_decisions_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sandboxes from a factory (a node service, a Ray pool) record their own events; the Guard's
    responses still go to $CORRAL_HOME/events.db unless told otherwise."""
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path))
    harness = Harness(make_policy(), store=None)
    try:
        with Guard(make_policy(), run_id="r-factory", async_sandbox_factory=harness.async_sandbox) as guard:
            with guard.episode("f1") as ep:  # a sync episode over an async factory
                assert ep.run(BAD).quarantined
            assert guard.open_episodes == 0
        with EventStore(tmp_path / "events.db") as s:
            actions = {e.data.action for e in s.query(run_id="r-factory", type="policy_decision")}
        assert {"penalty", "quarantine"} <= actions
        with pytest.raises(TypeError, match="async_sandbox_factory"):
            Guard(store=None, sandbox_factory=harness.sandbox).async_episode()
    finally:
        harness.close()

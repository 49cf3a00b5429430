"""Gymnasium 1.4: the tool env passes gymnasium's own env checker, registers with gymnasium.make, closes
its sandbox on the step a TimeLimit wrapper truncates, and turns Corral's verdicts into reward/truncation."""

from __future__ import annotations

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from integrations_support import BAD, make_guard, names_no_rule

from corral.events import EventStore
from corral.integrations import Guard, StepReport
from corral.integrations.gymnasium import ENV_ID, CorralToolEnv


def test_passes_gymnasiums_env_checker(guard: Guard) -> None:
    env = CorralToolEnv(guard, prompt="task")
    check_env(env, skip_render_check=True)
    env.close()


def test_episode_reward_penalty_and_neutral_text(guard: Guard) -> None:
    env = CorralToolEnv(guard, prompt="task", reward_fn=lambda r: float(r.exit_code == 0))
    obs, info = env.reset(options={"episode_id": "gym1"})
    assert obs == "task" and info == {"corral": None}
    obs, reward, term, trunc, info = env.step("echo ok")
    assert (obs, reward, term, trunc) == ("ok\n", 1.0, False, False)
    obs, reward, term, trunc, info = env.step(BAD)
    report: StepReport = info["corral"]
    assert reward == pytest.approx(-1.0) and report.quarantined and report.result.alerts
    assert "not run" in obs and names_no_rule(obs)
    env.close()
    assert env.summary is not None and env.summary.quarantined and env.summary.episode_id == "gym1"
    assert guard.open_episodes == 0


def test_time_limit_truncation_closes_the_sandbox(guard: Guard) -> None:
    env = gymnasium.make(ENV_ID, guard=guard, prompt="p", max_episode_steps=2)
    env.reset(seed=0)
    _, _, _, trunc, _ = env.step("true")
    assert not trunc and guard.open_episodes == 1
    _, _, _, trunc, _ = env.step("true")
    assert trunc and guard.open_episodes == 0  # TimeLimit truncated: no reset or close needed
    env.close()


def test_policy_truncation(store: EventStore) -> None:
    with make_guard(store, response={"end_episode": {"min_level": "high"}}) as guard:
        env = CorralToolEnv(guard)
        env.reset()
        _, _, term, trunc, info = env.step(BAD)
        assert trunc and not term and info["corral"].truncated and guard.open_episodes == 0

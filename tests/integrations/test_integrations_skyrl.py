"""skyrl-gym 0.4: CorralTextEnv registered with skyrl_gym and made the way SkyRL's generator makes it
(``make(id, env_config=..., extras=...)``, construction builds nothing), then driven through the
generator's call sequence (init, step per turn, get_metrics, close) with a scripted model; metrics go
through skyrl-gym's own per-environment aggregation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import skyrl_gym
from integrations_support import BAD, names_no_rule, write_policy
from skyrl_gym.metrics import aggregate_for_environment

from corral.integrations import GuardConfig, shared_guard
from corral.integrations.skyrl import CorralTextEnv, register_env
from corral.sandbox import ToolResult


class CountingEnv(CorralTextEnv):
    """A task's env: one point for every call that succeeded, five for the right answer."""

    def task_reward(self, result: ToolResult) -> float:
        return float(result.exit_code == 0)

    def final_reward(self, action: str) -> float:
        return 5.0 if "42" in action else 0.0


def generator_episode(
    env_id: str, actions: list[str], max_turns: int
) -> tuple[list[Any], dict[str, Any], list[str]]:
    """SkyRL's generator, per trajectory: make, init, step until done, get_metrics, close."""
    extras: dict[str, Any] = {"reward_spec": {}, "extra_info": {"episode_id": "sky"}}
    extras["max_turns"] = max_turns  # the generator sets this from generator.max_turns
    env = skyrl_gym.make(env_id, env_config={}, extras=extras)
    _chat, _ = env.init([{"role": "user", "content": "Count the files."}])
    seen: list[str] = []
    outs = []
    for action in actions:
        out = env.step(action)
        outs.append(out)
        seen.extend(m["content"] for m in out["observations"])
        if out["done"]:
            break
    metrics = env.get_metrics()
    env.close()
    return outs, metrics, seen


def test_generator_sequence(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy.yaml")
    register_env(
        "corral_test_env",
        policy=policy,
        run_id="sky-1",
        store=None,
        entry_point="test_integrations_skyrl:CountingEnv",
    )
    guard = shared_guard(GuardConfig(policy=policy, run_id="sky-1", store=None))
    env = skyrl_gym.make("corral_test_env", env_config={}, extras={})
    assert guard.open_episodes == 0  # made on SkyRL's event loop: nothing built yet
    env.close()

    outs, metrics, seen = generator_episode(
        "corral_test_env", ["<bash>echo from-sandbox</bash>", f"<bash>{BAD}</bash>", "The answer is 42."], 8
    )
    assert seen[0] == "from-sandbox\n" and "not run" in seen[1] and names_no_rule(seen[1])
    assert [o["reward"] for o in outs] == [1.0, pytest.approx(-1.0), 5.0]
    assert outs[1]["metadata"]["corral"].quarantined and outs[2]["done"]
    assert metrics["corral/penalty"] == pytest.approx(1.0) and metrics["corral/quarantined"] == 1.0
    agg = aggregate_for_environment("corral_test_env", [metrics, {**metrics, "corral/penalty": 0.0}])
    assert agg["corral/penalty"] == pytest.approx(0.5)
    assert guard.open_episodes == 0


def test_max_turns_from_extras_and_truncation(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy.yaml", response={"end_episode": {"min_level": "high"}})
    register_env("corral_trunc_env", policy=policy, run_id="sky-2", store=None)
    outs, _, _ = generator_episode("corral_trunc_env", ["<bash>true</bash>"] * 5, max_turns=2)
    assert len(outs) == 2 and outs[-1]["done"]  # extras["max_turns"] is honoured
    outs, metrics, _ = generator_episode("corral_trunc_env", [f"<bash>{BAD}</bash>", "<bash>true</bash>"], 8)
    assert len(outs) == 1 and outs[0]["done"] and metrics["corral/ended_by_policy"] == 1.0
    assert shared_guard(GuardConfig(policy=policy, run_id="sky-2", store=None)).open_episodes == 0

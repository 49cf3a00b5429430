"""Each framework adapter runs a short episode with a misbehaving action: penalty, quarantine, alert."""

from __future__ import annotations

import asyncio
from typing import Any

import gymnasium
import pytest
from integrations_support import BAD, make_policy

from corral.integrations import Guard, StepReport
from corral.integrations.gem import CorralGemWrapper
from corral.integrations.gymnasium import CorralToolEnv
from corral.integrations.openrlhf import corral_agent_instance, make_agent_step
from corral.integrations.skyrl import CorralTextEnv
from corral.integrations.trl import corral_environment_factory, corral_penalty_reward, corral_quarantine_mask
from corral.integrations.verl import TOOL_SCHEMA, CorralBashTool


def test_gymnasium_env(guard: Guard) -> None:
    env = CorralToolEnv(guard, prompt="task", reward_fn=lambda r: float(r.exit_code == 0), max_turns=5)
    assert isinstance(env, gymnasium.Env)
    obs, info = env.reset(options={"episode_id": "gym1"})
    assert obs == "task" and info["episode_id"] == "gym1"
    obs, reward, term, trunc, info = env.step("echo ok")
    assert (obs, reward, term, trunc) == ("ok\n", 1.0, False, False)
    obs, reward, term, trunc, info = env.step(BAD)
    report: StepReport = info["corral"]
    assert reward == pytest.approx(-1.0) and report.quarantined and report.result.alerts
    assert "blocked by policy" in obs
    env.close()
    assert env.last_summary is not None and env.last_summary.quarantined
    assert gymnasium.spaces.Text(10).contains("abc") and env.action_space.contains("ls -la")


def test_gymnasium_policy_truncation(store: Any) -> None:
    policy = make_policy().with_overrides(response={"end_episode": {"min_level": "high"}})
    with Guard(policy, store=store) as guard:
        env = CorralToolEnv(guard)
        env.reset()
        _, _, term, trunc, info = env.step(BAD)
        assert trunc and not term and info["corral_summary"].ended_by_policy


def test_verl_tool(guard: Guard) -> None:
    async def episode() -> tuple[list[tuple[str, float, dict[str, Any]]], float]:
        tool = CorralBashTool({"timeout_s": 10}, TOOL_SCHEMA, guard=guard)
        assert tool.get_openai_tool_schema()["function"]["name"] == "bash"
        iid = await tool.create("traj-1")
        out = [await tool.execute(iid, {"command": c}) for c in ("echo hi", BAD)]
        reward = await tool.calc_reward(iid)
        await tool.release(iid)
        return out, reward

    out, reward = asyncio.run(episode())
    assert out[0][:2] == ("hi\n", -0.0)
    text, step_reward, metrics = out[1]
    assert "blocked" in text and step_reward == pytest.approx(-1.0) and metrics["corral_quarantined"]
    assert metrics["corral_alerts"] and reward == pytest.approx(-1.0)


def test_openrlhf_agent_instance_and_step(guard: Guard) -> None:
    Agent = corral_agent_instance(guard, task_reward=lambda s, r: 1.0 if r and r.exit_code == 0 else 0.0)

    async def rollout() -> list[dict[str, Any]]:
        agent = Agent()
        await agent.reset({"observation": "prompt", "episode_id": "orl1"})
        outs = [
            await agent.step({"action_text": a})
            for a in ("<bash>echo hi</bash>", f"<bash>{BAD}</bash>", "done")
        ]
        return outs

    clean, bad, final = asyncio.run(rollout())
    assert clean["rewards"] == 1.0 and "hi" in clean["environment_feedback"] and not clean["done"]
    assert bad["rewards"] == pytest.approx(-1.0) and bad["extra_logs"]["corral_quarantined"] == 1.0
    assert bad["extra_logs"]["corral_alerts"] == 1.0 and bad["corral_quarantined"]
    assert final["done"] and final["extra_logs"]["corral_quarantined"] == 1.0

    step = make_agent_step(guard)

    async def legacy() -> dict[str, Any]:
        return await step("prompt", f"<bash>{BAD}</bash>", None, episode_id="orl2")

    out = asyncio.run(legacy())
    assert out["rewards"] == pytest.approx(-1.0) and out["extra_logs"]["corral_quarantined"] == 1.0
    assert "blocked" in out["next_observation"]


def test_skyrl_text_env(guard: Guard) -> None:
    env = CorralTextEnv(guard, episode_id="sky1", task_reward=lambda r: 0.5)
    _prompt, meta = env.init([{"role": "user", "content": "task"}])
    assert meta["episode_id"] == "sky1"
    ok = env.step("<bash>echo hi</bash>")
    assert ok["reward"] == 0.5 and ok["observations"][0]["content"] == "hi\n" and not ok["done"]
    bad = env.step(f"<bash>{BAD}</bash>")
    assert bad["reward"] == pytest.approx(-1.0) and bad["metadata"]["quarantined"]
    assert bad["metadata"]["corral"].result.alerts[0].category == "credential_access"
    assert env.step("final answer")["done"]
    env.close()


class GuessEnv:
    """A tiny GEM-style environment: guess the word."""

    def reset(self, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        return "guess the word", {"seed": seed}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return (
            "right" if action == "corral" else "wrong",
            float(action == "corral"),
            action == "corral",
            False,
            {},
        )


def test_gem_wrapper(guard: Guard) -> None:
    env = CorralGemWrapper(GuessEnv(), guard)
    obs, info = env.reset(seed=1, episode_id="gem1")
    assert obs == "guess the word" and info["seed"] == 1 and info["corral"] is None
    obs, reward, term, _, info = env.step(f"<bash>{BAD}</bash>")
    assert reward == pytest.approx(-1.0) and info["corral"].quarantined and not term
    obs, reward, term, _trunc, info = env.step("corral")
    assert (obs, reward, term) == ("right", 1.0, True)
    assert info["corral_summary"].quarantined and info["corral_summary"].alerts == 1


def test_trl_environment_factory(guard: Guard) -> None:
    factory = corral_environment_factory(guard)
    envs = [factory(), factory()]
    for i, env in enumerate(envs):
        assert env.reset(episode_id=f"trl{i}") is None
    public = [m for m in dir(envs[0]) if not m.startswith("_") and callable(getattr(envs[0], m))]
    assert public == ["bash", "reset"]  # TRL exposes public methods as tools: only bash
    assert envs[0].bash("echo hi") == "hi\n"
    assert "blocked" in envs[1].bash(BAD)
    assert corral_penalty_reward(["a", "b"], envs) == [0.0, -1.0]
    assert corral_quarantine_mask(envs) == [False, True]
    for env in envs:
        env._close()

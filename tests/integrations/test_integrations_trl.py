"""TRL 1.16: the environment factory survives pickling into a spawned process (as AsyncGRPOTrainer
does it) and works there; the environment's tools are what TRL's discovery finds (public functions but
reset/get_reward), with the schema transformers' get_json_schema builds from the docstring (TRL's
parser); bash is async (TRL's async tool path); get_reward is minus the penalty and closes the sandbox."""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing as mp
import pickle
from pathlib import Path
from typing import Any

import pytest
from integrations_support import BAD, names_no_rule, write_policy
from transformers.utils import get_json_schema

from corral.integrations import GuardConfig, shared_guard
from corral.integrations.trl import CorralEnvironment, CorralEnvironmentFactory, corral_quarantine_mask


def trl_tools(env: CorralEnvironment) -> list[Any]:
    """TRL 1.16's discovery (grpo_trainer.py, per-rollout tool dicts): public functions of the class."""
    return [
        getattr(env, name)
        for name, _ in inspect.getmembers(type(env), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    ]


def rollout(factory: CorralEnvironmentFactory, commands: list[str]) -> tuple[list[str], float, bool, int]:
    env = factory()
    assert env.reset(prompt="p") is None

    async def go() -> tuple[list[str], float]:
        outs = [await env.bash(command=c) for c in commands]
        return outs, await env.get_reward()

    outs, reward = asyncio.run(go())
    guard = shared_guard(GuardConfig(policy=factory.policy, run_id=factory.run_id, store=factory.store))
    return outs, reward, corral_quarantine_mask([env])[0], guard.open_episodes


def test_tools_and_schema(tmp_path: Path) -> None:
    env = CorralEnvironmentFactory(policy=write_policy(tmp_path / "p.yaml"), store=None)()
    tools = trl_tools(env)
    assert [t.__name__ for t in tools] == ["bash"] and inspect.iscoroutinefunction(tools[0])
    schema = get_json_schema(tools[0])["function"]
    assert schema["name"] == "bash" and schema["parameters"]["required"] == ["command"]
    assert schema["parameters"]["properties"]["command"]["type"] == "string"


def test_rollout_reward_and_close(tmp_path: Path) -> None:
    factory = CorralEnvironmentFactory(policy=write_policy(tmp_path / "p.yaml"), run_id="trl-1", store=None)
    outs, reward, quarantined, still_open = rollout(factory, ["echo from-sandbox", BAD])
    assert outs[0] == "from-sandbox\n" and "not run" in outs[1] and names_no_rule(outs[1])
    assert reward == pytest.approx(-1.0) and quarantined and still_open == 0


def test_pooled_reset_closes_the_last_rollout(tmp_path: Path) -> None:
    factory = CorralEnvironmentFactory(policy=write_policy(tmp_path / "p.yaml"), run_id="trl-2", store=None)
    env = factory()
    guard = shared_guard(GuardConfig(policy=factory.policy, run_id="trl-2", store=None))
    env.reset()
    asyncio.run(env.bash("true"))  # a rollout whose reward was never asked for
    assert guard.open_episodes == 1
    env.reset()  # TRL reuses pooled environments
    asyncio.run(env.get_reward())
    assert guard.open_episodes == 0


def _child(blob: bytes, queue: Any) -> None:
    factory = pickle.loads(blob)
    queue.put(rollout(factory, ["echo in-child", BAD]))


def test_factory_pickles_into_a_spawned_process(tmp_path: Path) -> None:
    factory = CorralEnvironmentFactory(policy=write_policy(tmp_path / "p.yaml"), run_id="trl-3", store=None)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(pickle.dumps(factory), queue))
    proc.start()
    outs, reward, quarantined, still_open = queue.get(timeout=120)
    proc.join(30)
    assert proc.exitcode == 0
    assert outs[0] == "in-child\n" and reward == pytest.approx(-1.0) and quarantined and still_open == 0

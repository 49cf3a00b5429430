"""gem-llm 0.1 / ROLL: CorralBashTool speaks GEM's tool protocol inside GEM's own ToolEnvWrapper (its
instructions, its tool-use cap), CorralToolEnvWrapper adds Corral's verdicts, and the example ROLL env
config builds the environment through gem.make over a real GEM game."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gem
import pytest
import yaml
from framework_wheels import ROOT
from gem.core import Env
from gem.tools.tool_env_wrapper import ToolEnvWrapper
from integrations_support import BAD, names_no_rule, write_policy

from corral.integrations import Guard
from corral.integrations.gem import ENV_ID, INSTRUCTIONS, CorralBashTool, CorralToolEnvWrapper


class TaskEnv(Env):  # type: ignore[misc]
    """A GEM environment that takes reset options and can spawn copies."""

    def __init__(self, answer: str = "42") -> None:
        super().__init__()
        self.answer = answer
        self.task: str | None = None

    def reset(self, seed: int | None = None, task: str = "default") -> tuple[str, dict[str, Any]]:
        super().reset(seed)
        self.task = task
        return f"task: {task}", {}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        right = self.answer in action
        return ("right" if right else "wrong"), float(right), right, False, {}

    def spawn(self, same_state: bool = False, **kwargs: Any) -> TaskEnv:
        return TaskEnv(**{"answer": self.answer, **kwargs})


def test_wrapper_episode(guard: Guard) -> None:
    env = CorralToolEnvWrapper(TaskEnv(), guard=guard, max_tool_uses=3)
    assert isinstance(env, ToolEnvWrapper) and env.answer == "42"  # GEM forwards attributes
    obs, info = env.reset(seed=1, task="fix", episode_id="gem1")
    assert obs.startswith("task: fix") and INSTRUCTIONS in obs and info["corral"] is None
    obs, reward, term, trunc, info = env.step("<bash>echo from-sandbox</bash>")
    assert obs == "Command output: from-sandbox\n" and reward == 0.0 and not (term or trunc)
    obs, reward, term, _, info = env.step(f"<bash>{BAD}</bash>")
    assert reward == pytest.approx(-1.0) and info["corral"].quarantined and not term
    assert "not run" in obs and names_no_rule(obs)
    assert info["metrics"]["corral/penalty"] == pytest.approx(1.0)
    obs, reward, term, _, info = env.step("it is 42")
    assert (obs, reward, term) == ("right", 1.0, True)
    assert guard.open_episodes == 0 and env.last_summary is not None and env.last_summary.quarantined


def test_tool_use_cap_is_gems(guard: Guard) -> None:
    env = CorralToolEnvWrapper(TaskEnv(), guard=guard, max_tool_uses=1)
    env.reset()
    obs, *_ = env.step("<bash>true</bash>")
    assert "maximum number of tool use" in obs
    obs, _, _, _, info = env.step("<bash>echo again</bash>")  # over the cap: GEM hands it to the task
    assert obs == "wrong" and info["corral"] is None
    env.close()
    assert guard.open_episodes == 0


def test_truncation_and_spawn(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml", response={"end_episode": {"min_level": "high"}})
    env = CorralToolEnvWrapper(TaskEnv(), corral={"policy": policy, "run_id": "gem-t", "store": None})
    env.reset()
    _, _, term, trunc, info = env.step(f"<bash>{BAD}</bash>")
    assert trunc and not term and info["corral"].truncated
    twin = env.spawn(answer="7")
    assert isinstance(twin, CorralToolEnvWrapper) and twin.tool is not env.tool and twin.answer == "7"
    twin.reset()
    assert twin.step("<bash>echo twin</bash>")[0] == "Command output: twin\n"
    twin.close()
    assert env.tool.guard.open_episodes == 0


def test_roll_env_config_through_gem_make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = (ROOT / "examples/integrations/roll/env.yaml").read_text()
    cfg = yaml.safe_load(re.sub(r"\$\{[a-z_]+\}", "0", raw))["corral_guess_the_number"]
    write_policy(tmp_path / "policy.yaml")
    monkeypatch.chdir(tmp_path)
    assert cfg["env_type"] == ENV_ID
    env = gem.make(cfg["env_type"], **cfg["env_config"])
    obs, _ = env.reset(seed=0)
    assert "Guess The Number" in obs and INSTRUCTIONS in obs
    obs, _, _, _, info = env.step("<bash>echo 5</bash>")
    assert obs == "Command output: 5\n" and info["corral"].result.exit_code == 0
    for n in range(1, 11):  # play the real game to its end: the sandbox closes with the episode
        _, _, term, trunc, _ = env.step(f"\\boxed{{{n}}}")
        if term or trunc:
            break
    assert term or trunc
    assert env.tool.guard.open_episodes == 0


def test_plain_gem_tool_env_wrapper_starts_an_episode_per_reset(guard: Guard) -> None:
    tool = CorralBashTool(guard)
    env = ToolEnvWrapper(TaskEnv(), tools=[tool], max_tool_uses=5)  # GEM's own wrapper, unmodified
    env.reset()
    env.step("<bash>true</bash>")
    first = tool.episode
    env.reset()  # GEM asks the tool for its instructions: the last episode ends
    assert first is not None and first.closed and tool.episode is None
    env.step("<bash>true</bash>")
    tool.end()
    assert guard.open_episodes == 0

"""An OpenRLHF agent (the ``--agent_func_path`` module shape).

OpenRLHF calls an agent instance's ``reset(states)`` once per sample and
``step(states)`` after each generation; ``step`` returns the reward, the text fed
back to the model, ``done`` and extra logs. ``CorralAgentInstance`` runs the
command in the action (``<bash>...</bash>`` or a ```bash fence) in the sample's
sandbox. In an agent_func module::

    AgentInstance = corral_agent_instance(Guard(Policy.load("policy.yaml"), run_id="r1"))

``rewards`` is minus the safety penalty plus ``task_reward(states, result)``;
``extra_logs`` carries the penalty and the quarantine flag. Wrap values in tensors
where your OpenRLHF version wants them (``to_reward``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from corral.integrations._guard import Guard, GuardedEpisode
from corral.integrations._text import CommandParser, extract_command
from corral.sandbox import ToolResult

TaskReward = Callable[[dict[str, Any], ToolResult | None], float]


def _zero(_: dict[str, Any], __: ToolResult | None) -> float:
    return 0.0


@dataclass(frozen=True)
class AgentConfig:
    guard: Guard
    parse: CommandParser = extract_command
    task_reward: TaskReward = _zero
    to_reward: Callable[[float], Any] = float
    timeout_s: float | None = None


class CorralAgentInstance:
    """One sample's multi-turn rollout. Make the class with ``corral_agent_instance(guard)``."""

    config: ClassVar[AgentConfig]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cfg = type(self).config
        self.guard = cfg.guard
        self.parse = cfg.parse
        self.task_reward = cfg.task_reward
        self.to_reward = cfg.to_reward
        self.timeout_s = cfg.timeout_s
        self.episode: GuardedEpisode | None = None

    async def reset(self, states: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.episode is not None:
            await asyncio.to_thread(self.episode.close)
        self.episode = await asyncio.to_thread(
            self.guard.episode, states.get("episode_id"), step=states.get("step")
        )
        return {"observation": states.get("observation", "")}

    async def step(self, states: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.episode is None:
            await self.reset(states)
        assert self.episode is not None
        action = str(states.get("action_text", ""))
        command = self.parse(action)
        if command is None:  # a final answer: the episode is over
            summary = await asyncio.to_thread(self.episode.close)
            reward = self.task_reward(states, None)  # penalties were paid on the calls that earned them
            return self._out(states, reward, "", True, {"corral_quarantined": float(summary.quarantined)})
        report = await asyncio.to_thread(self.episode.call, command, timeout=self.timeout_s)
        reward = (0.0 if report.result.blocked else self.task_reward(states, report.result)) - report.penalty
        logs = {
            "corral_penalty": report.penalty,
            "corral_quarantined": float(report.quarantined),
            "corral_alerts": float(len(report.result.alerts)),
            "corral_blocked": float(report.result.blocked),
        }
        done = report.truncated
        if done:
            await asyncio.to_thread(self.episode.close)
        feedback = f"\n<output>\n{report.observation}\n</output>\n"
        return self._out(states, reward, feedback, done, logs)

    def _out(
        self, states: dict[str, Any], reward: float, feedback: str, done: bool, logs: dict[str, float]
    ) -> dict[str, Any]:
        return {
            "rewards": self.to_reward(reward),
            "scores": self.to_reward(reward),
            "environment_feedback": feedback,
            "done": done,
            "sampling_params": states.get("sampling_params"),
            "extra_logs": logs,
            "corral_quarantined": bool(self.episode and self.episode.quarantined),
        }


def corral_agent_instance(
    guard: Guard,
    *,
    parse: CommandParser = extract_command,
    task_reward: TaskReward = _zero,
    to_reward: Callable[[float], Any] = float,
    timeout_s: float | None = None,
) -> type[CorralAgentInstance]:
    """The ``AgentInstance`` class OpenRLHF's agent_func module must define."""
    cfg = AgentConfig(guard, parse, task_reward, to_reward, timeout_s)
    return type("AgentInstance", (CorralAgentInstance,), {"config": cfg})


def make_agent_step(
    guard: Guard, *, parse: CommandParser = extract_command, timeout_s: float | None = None
) -> Callable[..., Any]:
    """The older function form: ``async def step(observation, action, label, **kwargs) -> dict``.

    Episodes are keyed by ``kwargs["episode_id"]`` (default: the observation's prompt hash).
    """
    episodes: dict[str, GuardedEpisode] = {}

    async def step(observation: str, action: str, label: Any, **kwargs: Any) -> dict[str, Any]:
        key = str(kwargs.get("episode_id") or hash(observation.split("<output>")[0]))
        ep = episodes.get(key)
        if ep is None:
            ep = episodes[key] = await asyncio.to_thread(guard.episode, key, step=kwargs.get("step"))
        command = parse(action)
        if command is None:
            await asyncio.to_thread(episodes.pop(key).close)
            return {
                "rewards": 0.0,
                "scores": 0.0,
                "next_observation": observation + action,
                "done": True,
                "sampling_params": kwargs.get("sampling_params"),
                "extra_logs": {"corral_quarantined": float(ep.quarantined)},
            }
        report = await asyncio.to_thread(ep.call, command, timeout=timeout_s)
        if report.truncated:
            await asyncio.to_thread(episodes.pop(key).close)
        return {
            "rewards": -report.penalty,
            "scores": -report.penalty,
            "next_observation": f"{observation}{action}\n<output>\n{report.observation}\n</output>\n",
            "done": report.truncated,
            "sampling_params": kwargs.get("sampling_params"),
            "extra_logs": {"corral_penalty": report.penalty, "corral_quarantined": float(report.quarantined)},
        }

    return step

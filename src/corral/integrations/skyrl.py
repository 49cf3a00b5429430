"""A SkyRL text environment (the ``BaseTextEnv`` shape: ``init`` / ``step`` / ``close``).

``step(action)`` runs the command in the action in the episode's sandbox and
returns ``{"observations": [...], "reward", "done", "metadata"}``; the reward is
``task_reward(result) - penalty``, ``metadata["corral"]`` is the StepReport.
When skyrl-gym is installed the class subclasses its ``BaseTextEnv``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corral.integrations._compat import optional_base
from corral.integrations._guard import Guard, GuardedEpisode
from corral.integrations._text import CommandParser, extract_command
from corral.sandbox import ToolResult

_Base: Any = optional_base("skyrl_gym.envs.base_text_env", "BaseTextEnv")

Message = dict[str, str]


class CorralTextEnv(_Base):  # type: ignore[misc]
    def __init__(
        self,
        guard: Guard,
        *,
        episode_id: str | None = None,
        step: int | None = None,
        task_reward: Callable[[ToolResult], float] | None = None,
        parse: CommandParser = extract_command,
        max_turns: int = 16,
        timeout_s: float | None = None,
    ) -> None:
        if _Base is not object:
            super().__init__()
        self.guard = guard
        self.parse = parse
        self.task_reward = task_reward
        self.max_turns = max_turns
        self.timeout_s = timeout_s
        self.turns = 0
        self.episode: GuardedEpisode = guard.episode(episode_id, step=step)

    def init(self, prompt: list[Message]) -> tuple[list[Message], dict[str, Any]]:
        return prompt, {"episode_id": self.episode.ctx.episode_id}

    def step(self, action: str) -> dict[str, Any]:
        self.turns += 1
        command = self.parse(action)
        if command is None:
            return {"observations": [], "reward": 0.0, "done": True, "metadata": {"corral": None}}
        report = self.episode.call(command, timeout=self.timeout_s)
        base = 0.0 if report.result.blocked or self.task_reward is None else self.task_reward(report.result)
        done = report.truncated or self.turns >= self.max_turns
        return {
            "observations": [{"role": "user", "content": report.observation}],
            "reward": base - report.penalty,
            "done": done,
            "metadata": {"corral": report, "quarantined": report.quarantined},
        }

    def close(self) -> None:
        self.episode.close()

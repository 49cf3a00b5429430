"""A Gymnasium tool environment: each action is a shell command run in the episode's sandbox.

    env = CorralToolEnv(guard, prompt="Fix the failing test.", reward_fn=lambda r: float(r.exit_code == 0))
    obs, info = env.reset()
    obs, reward, terminated, truncated, info = env.step("pytest -q")
    info["corral"]   # StepReport: penalty, quarantined, alerts in .result.alerts

The reward is ``reward_fn(result) - penalty``; a policy halt is a truncation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium
from gymnasium import spaces

from corral.integrations._guard import Guard, GuardedEpisode, StepReport
from corral.respond import EpisodeSummary
from corral.sandbox import ToolResult

RewardFn = Callable[[ToolResult], float]
DoneFn = Callable[[ToolResult], bool]

_CHARSET = "".join(chr(c) for c in range(9, 127))


def _no_reward(_: ToolResult) -> float:
    return 0.0


def _never(_: ToolResult) -> bool:
    return False


class CorralToolEnv(gymnasium.Env[str, str]):
    """Text in (a command), text out (its output). One sandbox per episode."""

    metadata = {"render_modes": []}  # noqa: RUF012  (gymnasium declares it this way)

    def __init__(
        self,
        guard: Guard,
        *,
        prompt: str = "",
        reward_fn: RewardFn = _no_reward,
        done_fn: DoneFn = _never,
        max_turns: int = 32,
        timeout_s: float | None = None,
        max_text: int = 65536,
    ) -> None:
        self.guard = guard
        self.prompt = prompt
        self.reward_fn = reward_fn
        self.done_fn = done_fn
        self.max_turns = max_turns
        self.timeout_s = timeout_s
        self.action_space = spaces.Text(max_length=max_text, charset=_CHARSET)
        self.observation_space = spaces.Text(max_length=max_text, charset=_CHARSET)
        self._episode: GuardedEpisode | None = None
        self._n = 0
        self.last_summary: EpisodeSummary | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self._close_episode()
        opts = options or {}
        self._n += 1
        self._episode = self.guard.episode(opts.get("episode_id"), step=opts.get("step"))
        return self.prompt, {"corral": None, "episode_id": self._episode.ctx.episode_id}

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._episode is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        report: StepReport = self._episode.call(action, timeout=self.timeout_s)
        r = report.result
        base = 0.0 if r.blocked else self.reward_fn(r)
        terminated = (not r.blocked) and self.done_fn(r)
        truncated = report.truncated or self._episode.turn >= self.max_turns
        info: dict[str, Any] = {"corral": report}
        if terminated or truncated:
            info["corral_summary"] = self._close_episode()
        return report.observation, base - report.penalty, terminated, truncated, info

    def _close_episode(self) -> EpisodeSummary | None:
        if self._episode is None:
            return None
        summary = self._episode.close()
        self._episode = None
        self.last_summary = summary
        return summary

    def close(self) -> None:
        self._close_episode()
        super().close()

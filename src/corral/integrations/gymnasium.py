"""Gymnasium (1.x): a tool environment whose actions are shell commands run in the episode's sandbox.

    env = gymnasium.make("corral/ToolEnv-v0", guard=guard, prompt="Fix the failing test.",
                         reward_fn=lambda r: float(r.exit_code == 0), max_episode_steps=16)
    obs, info = env.reset(seed=0, options={"episode_id": "e1", "step": 3})
    obs, reward, terminated, truncated, info = env.step("pytest -q")
    info["corral"]   # StepReport: penalty, quarantined, truncated, the result and its alerts

The reward is ``reward_fn(result) - penalty``; a Corral truncation is ``truncated``. The
sandbox closes when the episode ends, including on the step where a ``TimeLimit`` wrapper
(``max_episode_steps``) truncates it: ``gymnasium.make`` adds ``CloseOnEpisodeEnd`` outside
the time limit. ``info`` holds only ``"corral"`` (None after reset),
so the environment passes ``gymnasium.utils.env_checker.check_env``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium
from gymnasium import spaces
from gymnasium.envs.registration import WrapperSpec

from corral.integrations._episode import Episode
from corral.integrations._guard import Guard
from corral.respond import EpisodeSummary
from corral.sandbox import ToolResult

ENV_ID = "corral/ToolEnv-v0"
RewardFn = Callable[[ToolResult], float]
DoneFn = Callable[[ToolResult], bool]

_CHARSET = "".join(chr(c) for c in range(9, 127))


def _no_reward(_: ToolResult) -> float:
    return 0.0


def _never(_: ToolResult) -> bool:
    return False


class CorralToolEnv(gymnasium.Env[str, str]):
    """Text in (a command), text out (its output and Corral's note). One sandbox per episode."""

    metadata = {"render_modes": []}  # noqa: RUF012  (gymnasium declares it this way)

    def __init__(
        self,
        guard: Guard,
        *,
        prompt: str = "",
        reward_fn: RewardFn = _no_reward,
        done_fn: DoneFn = _never,
        max_turns: int | None = None,
        timeout_s: float | None = None,
        max_text: int = 65536,
    ) -> None:
        self.guard = guard
        self.prompt = prompt
        self.reward_fn = reward_fn
        self.done_fn = done_fn
        self.max_turns = max_turns
        self.timeout_s = timeout_s
        self.action_space = spaces.Text(max_length=max_text, min_length=1, charset=_CHARSET)
        self.observation_space = spaces.Text(max_length=max_text, min_length=0, charset=_CHARSET)
        self._episode: Episode | None = None
        self.last_summary: EpisodeSummary | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.end_episode()
        opts = options or {}
        self._episode = self.guard.episode(opts.get("episode_id"), step=opts.get("step"))
        return self.prompt, {"corral": None}

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._episode is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        report = self._episode.run(action, timeout=self.timeout_s)
        r = report.result
        base = 0.0 if r.blocked else self.reward_fn(r)
        terminated = (not r.blocked) and self.done_fn(r)
        truncated = report.truncated or (self.max_turns is not None and self._episode.turn >= self.max_turns)
        if terminated or truncated:
            self.end_episode()
        return report.observation, base - report.penalty, terminated, truncated, {"corral": report}

    @property
    def summary(self) -> EpisodeSummary | None:
        """The current (or last) episode's safety summary."""
        return self._episode.summary if self._episode is not None else self.last_summary

    def end_episode(self) -> None:
        """Close the episode's sandbox now (a wrapper outside ended the episode); idempotent."""
        if self._episode is None:
            return
        self.last_summary = self._episode.close()
        self._episode = None

    def close(self) -> None:
        self.end_episode()
        super().close()


class CloseOnEpisodeEnd(gymnasium.Wrapper[str, str, str, str], gymnasium.utils.RecordConstructorArgs):
    """Closes the sandbox on the step an outer wrapper ends the episode (``TimeLimit`` truncation):
    ``CloseOnEpisodeEnd(TimeLimit(CorralToolEnv(guard), 16))``. ``gymnasium.make`` adds it itself."""

    def __init__(self, env: gymnasium.Env[str, str]) -> None:
        gymnasium.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        inner = self.env.unwrapped
        if (terminated or truncated) and isinstance(inner, CorralToolEnv):
            inner.end_episode()
        return obs, reward, terminated, truncated, info


if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        ENV_ID,
        entry_point="corral.integrations.gymnasium:CorralToolEnv",
        additional_wrappers=(
            WrapperSpec("CloseOnEpisodeEnd", "corral.integrations.gymnasium:CloseOnEpisodeEnd", {}),
        ),
    )

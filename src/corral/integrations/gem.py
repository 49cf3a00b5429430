"""A GEM-style environment wrapper (as ROLL's agentic pipeline uses: ``reset`` / ``step`` 5-tuple).

Wraps an inner GEM environment: an action that holds a tool call (``<bash>...</bash>``)
runs in the episode's sandbox and its output is the next observation; any other
action goes to the inner environment. A policy halt is a truncation, a penalty
is subtracted from the reward, and Corral's data is ``info["corral"]``.
"""

from __future__ import annotations

from typing import Any, Protocol

from corral.integrations._guard import Guard, GuardedEpisode
from corral.integrations._text import CommandParser, extract_command
from corral.respond import EpisodeSummary


class GemEnv(Protocol):
    def reset(self, seed: int | None = None) -> tuple[Any, dict[str, Any]]: ...

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]: ...


class CorralGemWrapper:
    def __init__(
        self,
        env: GemEnv,
        guard: Guard,
        *,
        parse: CommandParser = extract_command,
        timeout_s: float | None = None,
    ) -> None:
        self.env = env
        self.guard = guard
        self.parse = parse
        self.timeout_s = timeout_s
        self.episode: GuardedEpisode | None = None
        self.last_summary: EpisodeSummary | None = None

    def reset(self, seed: int | None = None, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._end()
        obs, info = self.env.reset(seed=seed)
        self.episode = self.guard.episode(kwargs.get("episode_id"), step=kwargs.get("step"))
        return obs, {**info, "corral": None}

    def step(self, action: str) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self.episode is None:
            raise RuntimeError("call reset() before step()")
        command = self.parse(action)
        if command is None:
            obs, reward, terminated, truncated, info = self.env.step(action)
            info = {**info, "corral": None}
        else:
            report = self.episode.call(command, timeout=self.timeout_s)
            obs, reward, terminated, truncated = report.observation, -report.penalty, False, report.truncated
            info = {"corral": report}
        if terminated or truncated:
            info["corral_summary"] = self._end()
        return obs, reward, terminated, truncated, info

    def _end(self) -> EpisodeSummary | None:
        if self.episode is None:
            return None
        self.last_summary = self.episode.close()
        self.episode = None
        return self.last_summary

    def close(self) -> None:
        self._end()

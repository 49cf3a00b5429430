"""SkyRL (skyrl-gym 0.4): a ``BaseTextEnv`` whose tool calls run in Corral.

SkyRL's generator builds one environment per trajectory with
``skyrl_gym.make(env_class, env_config=..., extras=...)`` on its event loop, then calls
``init``, ``step`` per turn, ``get_metrics`` and ``close`` (in its env worker threads when
``max_env_workers > 0``). So construction here builds nothing; the sandbox is made in
``init`` and closed in ``close``. Register once per process (the entry point of your
SkyRL job)::

    from corral.integrations.skyrl import register_env
    register_env("corral_bash", policy="policy.yaml", run_id="my-run", timeout_s=30)
    # then: environment.env_class=corral_bash

``step`` runs the command in the action (``<bash>...</bash>`` or a ```bash fence); an action
without one is the final answer (``done``). The reward is ``task_reward(result) - penalty``,
``done`` also on a Corral truncation and after ``extras["max_turns"]`` turns (SkyRL's
``generator.max_turns``); ``metadata["corral"]`` is the ``StepReport``; ``get_metrics``
gives the episode's numeric safety metrics, which SkyRL aggregates per environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import skyrl_gym
from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput

from corral.integrations._config import GuardConfig, shared_guard
from corral.integrations._episode import Episode
from corral.integrations._guard import Guard
from corral.integrations._text import CommandParser, extract_command
from corral.respond import EpisodeSummary
from corral.sandbox import ToolResult

Message = dict[str, str]
TaskReward = Callable[[ToolResult], float]


class CorralTextEnv(BaseTextEnv):  # type: ignore[misc]
    """One SkyRL trajectory in one sandbox. Subclass and override ``task_reward`` /
    ``final_reward`` for the task's own reward."""

    def __init__(
        self,
        env_config: Any = None,
        extras: Mapping[str, Any] | None = None,
        *,
        corral: Mapping[str, Any] | None = None,
        guard: Guard | None = None,
        timeout_s: float | None = None,
        parse: CommandParser = extract_command,
    ) -> None:
        super().__init__()
        extras = extras or {}
        self.guard = guard or shared_guard(GuardConfig.from_mapping(corral or {}, where="SkyRL env kwargs"))
        self.timeout_s = timeout_s
        self.parse = parse
        self.extras = extras
        self.max_turns = int(
            extras.get("max_turns") or (extras.get("extra_info") or {}).get("max_turns") or 16
        )
        self.episode: Episode | None = None

    def task_reward(self, result: ToolResult) -> float:
        """The task's reward for a call that ran (default 0)."""
        return 0.0

    def final_reward(self, action: str) -> float:
        """The task's reward for the final answer (default 0)."""
        return 0.0

    def init(self, prompt: list[Message]) -> tuple[list[Message], dict[str, Any]]:
        self.close()
        info = self.extras.get("extra_info") or {}
        self.episode = self.guard.episode(info.get("episode_id"), step=info.get("step"))
        return prompt, {}

    def step(self, action: str) -> BaseTextEnvStepOutput:
        self.turns += 1
        if self.episode is None:
            self.init([])
        assert self.episode is not None
        command = self.parse(action)
        if command is None:
            return BaseTextEnvStepOutput(
                observations=[], reward=self.final_reward(action), done=True, metadata={"corral": None}
            )
        report = self.episode.run(command, timeout=self.timeout_s)
        base = 0.0 if report.result.blocked else self.task_reward(report.result)
        done = report.truncated or self.turns >= self.max_turns
        return BaseTextEnvStepOutput(
            observations=[] if done else [{"role": "user", "content": report.observation}],
            reward=base - report.penalty,
            done=done,
            metadata={"corral": report},
        )

    @property
    def summary(self) -> EpisodeSummary | None:
        return self.episode.summary if self.episode is not None else None

    def get_metrics(self) -> dict[str, Any]:
        return self.episode.summary.metrics() if self.episode is not None else {}

    def close(self) -> None:
        if self.episode is not None:
            self.episode.close()  # keeps its summary for get_metrics


def register_env(
    env_id: str = "corral_bash",
    *,
    policy: str | None = None,
    run_id: str | None = None,
    store: str | None = "default",
    timeout_s: float | None = None,
    entry_point: str = "corral.integrations.skyrl:CorralTextEnv",
) -> None:
    """Register a Corral text environment with skyrl-gym under ``env_id`` (idempotent per process).
    ``entry_point`` names a ``CorralTextEnv`` subclass with the task's reward."""
    if env_id in skyrl_gym.envs.registration.registry:
        return
    corral = GuardConfig(policy=policy, run_id=run_id, store=store).model_dump()
    skyrl_gym.register(id=env_id, entry_point=entry_point, kwargs={"corral": corral, "timeout_s": timeout_s})

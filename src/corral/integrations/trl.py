"""A TRL environment factory (``GRPOTrainer(environment_factory=...)``).

TRL makes one environment per rollout with the factory, calls ``reset(**row)``
and exposes the environment's public methods as tools the model may call, by
their docstrings. Reward functions receive the environments (``environments=``).
So the environment here has exactly one public tool, ``bash``; the safety state
is in attributes, and ``corral_penalty_reward`` is a reward function::

    trainer = GRPOTrainer(..., environment_factory=corral_environment_factory(guard),
                          reward_funcs=[task_reward, corral_penalty_reward])
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from corral.integrations._guard import Guard, GuardedEpisode
from corral.respond import EpisodeSummary


class CorralEnvironment:
    """One rollout's sandbox. Public methods are tools; everything else is private or an attribute."""

    def __init__(self, guard: Guard, timeout_s: float | None = None) -> None:
        self._guard = guard
        self._timeout_s = timeout_s
        self._episode: GuardedEpisode | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.summary: EpisodeSummary | None = None

    def reset(self, **kwargs: Any) -> str | None:
        self._close()
        self._episode = self._guard.episode(kwargs.get("episode_id"), step=kwargs.get("step"))
        self.summary = self._episode.summary
        self._finalizer = weakref.finalize(self, self._episode.close)
        return None

    def bash(self, command: str) -> str:
        """Run a shell command in the task's sandboxed workspace.

        Args:
            command: The shell command to run.

        Returns:
            The command's output.
        """
        if self._episode is None:
            self.reset()
        assert self._episode is not None
        return self._episode.call(command, timeout=self._timeout_s).observation

    def _close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._episode = None


def corral_environment_factory(
    guard: Guard, *, timeout_s: float | None = None
) -> Callable[[], CorralEnvironment]:
    def factory() -> CorralEnvironment:
        return CorralEnvironment(guard, timeout_s)

    return factory


def corral_penalty_reward(
    completions: Sequence[Any], environments: Sequence[CorralEnvironment], **kwargs: Any
) -> list[float]:
    """TRL reward function: minus each rollout's safety penalty (0 for a clean rollout)."""
    return [-(env.summary.penalty if env.summary else 0.0) for env in environments]


def corral_quarantine_mask(environments: Sequence[CorralEnvironment]) -> list[bool]:
    """True for rollouts to drop from the update."""
    return [bool(env.summary and env.summary.quarantined) for env in environments]

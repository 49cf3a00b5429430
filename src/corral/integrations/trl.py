"""TRL (1.x): an ``environment_factory`` whose one tool, ``bash``, runs in Corral.

TRL makes environments with the factory, pools them, calls ``reset(**row)`` before each
rollout, exposes the environment's public methods as tools (their docstrings are the
schema) and, when the environment has ``get_reward``, calls it once per finished rollout.
``AsyncGRPOTrainer`` pickles the factory into a child process: ``CorralEnvironmentFactory``
is a plain picklable value and each process makes its own Guard from it::

    factory = CorralEnvironmentFactory(policy="policy.yaml", run_id="my-run", timeout_s=30)
    trainer = GRPOTrainer(..., environment_factory=factory, reward_funcs=[task_reward])

``bash`` is async (TRL runs async tools on its event loop, so rollouts' calls overlap without
a thread each). ``get_reward`` is minus the rollout's safety penalty; it also closes the
rollout's sandbox. After a Corral truncation ``bash`` refuses to run anything. The
rollout's ``EpisodeSummary`` is ``env.corral`` (``corral_quarantine_mask`` reads it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from corral.integrations._config import GuardConfig, shared_guard
from corral.integrations._episode import AsyncEpisode
from corral.integrations._guard import Guard
from corral.respond import EpisodeSummary


class CorralEnvironment:
    """One rollout's sandbox. Public methods are TRL tools, except ``reset`` and ``get_reward``."""

    def __init__(self, guard: Guard, timeout_s: float | None = None) -> None:
        self._guard = guard
        self._timeout_s = timeout_s
        self._episode: AsyncEpisode | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.corral: EpisodeSummary | None = None

    def reset(self, **row: Any) -> str | None:
        """A new rollout (TRL reuses pooled environments): the last one's sandbox is closed first."""
        self._close()
        self._episode = self._guard.async_episode(row.get("episode_id"), step=row.get("step"))
        self.corral = self._episode.summary
        return None

    async def bash(self, command: str) -> str:
        """Run a shell command in the task's sandboxed workspace.

        Args:
            command: The shell command to run.

        Returns:
            The command's output.
        """
        if self._episode is None:
            self.reset()
        assert self._episode is not None
        self._loop = asyncio.get_running_loop()
        report = await self._episode.run(command, timeout=self._timeout_s)
        return report.observation

    async def get_reward(self) -> float:
        """Minus this rollout's safety penalty (0 when clean); the rollout is over: its sandbox closes."""
        if self._episode is None:
            return 0.0
        ep, self._episode = self._episode, None
        summary = await ep.close()
        return -summary.penalty

    def _close(self) -> None:
        """Close an episode from synchronous code (``reset``), on the loop its sandbox runs on."""
        if self._episode is None:
            return
        ep, self._episode = self._episode, None
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:  # called from inside that loop: close soon, without blocking it
                loop.create_task(ep.close())
                return
            asyncio.run_coroutine_threadsafe(ep.close(), loop).result()
        else:
            asyncio.run(ep.close())  # never started on a loop that still runs: nothing to await there


@dataclass(frozen=True)
class CorralEnvironmentFactory:
    """TRL's ``environment_factory``: picklable (for ``AsyncGRPOTrainer``), one Guard per process."""

    policy: str | None = None
    run_id: str | None = None
    store: str | None = "default"
    timeout_s: float | None = None

    def __call__(self) -> CorralEnvironment:
        guard = shared_guard(GuardConfig(policy=self.policy, run_id=self.run_id, store=self.store))
        return CorralEnvironment(guard, self.timeout_s)


def corral_quarantine_mask(environments: Sequence[CorralEnvironment]) -> list[bool]:
    """True for rollouts to drop from the update."""
    return [bool(env.corral and env.corral.quarantined) for env in environments]

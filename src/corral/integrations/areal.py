"""AReaL (1.0): a ``RolloutWorkflow`` that runs another workflow's episode in a guarded episode.

AReaL calls ``await workflow.arun_episode(engine, data)`` for each trajectory and drops a
trajectory whose result is ``None``. ``CorralWorkflow(inner)`` opens one async episode per
trajectory; the inner workflow's tool code runs commands with
``await current_episode().run(command)`` (output for the model, Corral's neutral note
included). When the episode ends the sandbox is closed; a quarantined trajectory returns
``None`` (AReaL rejects it); otherwise the episode's penalty is subtracted from the result's
``"rewards"`` (a tensor or a float) or from the last interaction's ``reward``::

    workflow = CorralWorkflow(MyToolWorkflow(...), policy="policy.yaml", run_id="my-run")
"""

from __future__ import annotations

import contextvars
from typing import Any

from areal.api.workflow_api import RolloutWorkflow

from corral.integrations._config import GuardConfig, shared_guard
from corral.integrations._episode import AsyncEpisode
from corral.integrations._guard import Guard
from corral.respond import EpisodeSummary

_current: contextvars.ContextVar[AsyncEpisode | None] = contextvars.ContextVar(
    "corral_areal_episode", default=None
)


def current_episode() -> AsyncEpisode:
    """The guarded episode of the trajectory this task is running (inside ``CorralWorkflow``)."""
    ep = _current.get()
    if ep is None:
        raise RuntimeError("no Corral episode here: run the workflow inside CorralWorkflow")
    return ep


class CorralWorkflow(RolloutWorkflow):  # type: ignore[misc]
    """Wraps a ``RolloutWorkflow``: a sandbox per trajectory, penalties in the reward, quarantine as None."""

    def __init__(
        self,
        workflow: Any,
        guard: Guard | None = None,
        *,
        policy: str | None = None,
        run_id: str | None = None,
        store: str | None = "default",
    ) -> None:
        self.workflow = workflow
        self.guard = guard or shared_guard(GuardConfig(policy=policy, run_id=run_id, store=store))
        self.last_summary: EpisodeSummary | None = None

    async def arun_episode(self, engine: Any, data: dict[str, Any]) -> Any:
        ep = self.guard.async_episode(data.get("episode_id") or data.get("query_id"), step=data.get("step"))
        token = _current.set(ep)
        try:
            result = await self.workflow.arun_episode(engine, data)
        finally:
            _current.reset(token)
            summary = self.last_summary = await ep.close()
        if result is None or summary.quarantined:
            return None
        return _penalize(result, summary.penalty)


def _penalize(result: Any, penalty: float) -> Any:
    if not penalty or not isinstance(result, dict):
        return result
    if "rewards" in result:
        return {**result, "rewards": result["rewards"] - penalty}
    # dict[str, InteractionWithTokenLogpReward]: the trajectory's reward sits on its last interaction
    rewarded = [i for i in result.values() if getattr(i, "reward", None) is not None]
    if rewarded:
        rewarded[-1].reward = rewarded[-1].reward - penalty
    return result

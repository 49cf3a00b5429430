"""OpenRLHF (0.11): the ``--train.agent_func_path`` module's ``AgentExecutor``, with tool calls in Corral.

OpenRLHF loads the file, takes its ``AgentExecutor`` (an ``AgentExecutorBase`` subclass) and
calls ``execute`` once per sample; ``MultiTurnAgentExecutor`` makes one ``AgentInstance``
per sample and calls ``reset`` then ``step`` after every generation. In the agent file::

    from corral.integrations.openrlhf import agent_executor
    AgentExecutor = agent_executor(policy="policy.yaml", run_id="my-run", timeout_s=30)

Each sample gets a sandbox at ``reset``; ``step`` runs the command in the action
(``<bash>...</bash>`` or a ```bash fence) and feeds its output back; an action without a
command is the final answer. ``rewards`` is ``task_reward(states, result) - penalty`` (a
value with ``.item()``, as OpenRLHF reads it); a Corral truncation is ``done``. The
executor closes the sample's sandbox however the rollout ends, the token budget included,
and adds Corral's data to the sample's result under one key, ``"corral"`` (the
``EpisodeSummary``), and as numbers to ``extra_logs`` (OpenRLHF logs those).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, ClassVar

from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor

from corral.integrations._config import GuardConfig, shared_guard
from corral.integrations._episode import AsyncEpisode
from corral.integrations._guard import Guard
from corral.integrations._text import CommandParser, extract_command
from corral.respond import EpisodeSummary
from corral.sandbox import ToolResult

TaskReward = Callable[[dict[str, Any], ToolResult | None], float]


class Reward(float):
    """A reward OpenRLHF can read with ``.item()`` (it expects a tensor) without importing torch."""

    def item(self) -> float:
        return float(self)


def _zero(_: dict[str, Any], __: ToolResult | None) -> float:
    return 0.0


# The instances made by the executor call running in this task, so that it can close them.
_instances: contextvars.ContextVar[list[CorralAgentInstance] | None] = contextvars.ContextVar(
    "corral_openrlhf_instances", default=None
)


class CorralAgentInstance(AgentInstanceBase):  # type: ignore[misc]
    """One sample's multi-turn rollout in one sandbox. Configured by ``agent_executor``."""

    guard_config: ClassVar[GuardConfig] = GuardConfig()
    parse: ClassVar[CommandParser] = staticmethod(extract_command)
    task_reward: ClassVar[TaskReward] = staticmethod(_zero)
    timeout_s: ClassVar[float | None] = None
    guard_override: ClassVar[Guard | None] = None  # tests and in-process use: a live Guard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.guard = type(self).guard_override or shared_guard(type(self).guard_config)
        self.episode: AsyncEpisode | None = None
        live = _instances.get()
        if live is not None:
            live.append(self)

    async def reset(self, states: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        await self.close()
        self.episode = self.guard.async_episode(states.get("episode_id"), step=states.get("step"))
        return {"observation": states.get("observation", "")}

    async def step(self, states: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.episode is None:
            await self.reset(states)
        ep = self.episode
        assert ep is not None
        command = type(self).parse(str(states.get("action_text", "")))
        if command is None:  # the final answer; penalties were paid on the calls that earned them
            reward = type(self).task_reward(states, None)
            return self._out(states, reward, "", True, ep.summary)
        report = await ep.run(command, timeout=type(self).timeout_s)
        base = 0.0 if report.result.blocked else type(self).task_reward(states, report.result)
        feedback = f"\n<output>\n{report.observation}\n</output>\n"
        return self._out(states, base - report.penalty, feedback, report.truncated, ep.summary)

    @staticmethod
    def _out(
        states: dict[str, Any], reward: float, feedback: str, done: bool, summary: EpisodeSummary
    ) -> dict[str, Any]:
        return {
            "rewards": Reward(reward),
            "scores": Reward(reward),
            "environment_feedback": feedback,
            "done": done,
            "sampling_params": states.get("sampling_params"),
            "extra_logs": summary.metrics(),
        }

    async def close(self) -> EpisodeSummary | None:
        if self.episode is None:
            return None
        ep, self.episode = self.episode, None
        return await ep.close()


class CorralAgentExecutor(MultiTurnAgentExecutor):  # type: ignore[misc]
    """OpenRLHF's ``MultiTurnAgentExecutor`` that never leaves a sample's sandbox open."""

    instance_cls: ClassVar[type[CorralAgentInstance]] = CorralAgentInstance

    def __init__(self) -> None:
        super().__init__(type(self).instance_cls)

    async def execute(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        live: list[CorralAgentInstance] = []
        token = _instances.set(live)
        summaries: list[EpisodeSummary] = []
        try:
            out: dict[str, Any] = await super().execute(*args, **kwargs)
        finally:
            _instances.reset(token)
            for inst in live:
                ep = inst.episode
                await inst.close()
                if ep is not None:
                    summaries.append(ep.summary)
        if summaries:
            out["corral"] = summaries[-1]
            out["extra_logs"] = {**(out.get("extra_logs") or {}), **summaries[-1].metrics()}
        return out


def agent_executor(
    *,
    policy: str | None = None,
    run_id: str | None = None,
    store: str | None = "default",
    timeout_s: float | None = None,
    parse: CommandParser = extract_command,
    task_reward: TaskReward = _zero,
    guard: Guard | None = None,
) -> type[CorralAgentExecutor]:
    """The ``AgentExecutor`` class an OpenRLHF agent_func module exports (OpenRLHF builds it with no
    arguments, in its rollout actor's process: the Guard is made there, from this configuration)."""
    attrs: dict[str, Any] = {
        "guard_config": GuardConfig(policy=policy, run_id=run_id, store=store),
        "parse": staticmethod(parse),
        "task_reward": staticmethod(task_reward),
        "timeout_s": timeout_s,
        "guard_override": guard,
    }
    instance = type("AgentInstance", (CorralAgentInstance,), attrs)
    return type("AgentExecutor", (CorralAgentExecutor,), {"instance_cls": instance})

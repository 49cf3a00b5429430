"""A verl tool (the ``BaseTool`` shape: async create / execute / calc_reward / release).

verl loads tools by class name from its tool config; point it at
``corral.integrations.verl.CorralBashTool`` with a config like
``{"policy_path": "policy.yaml", "timeout_s": 30, "run_id": "r1"}``. Each
trajectory gets its own sandbox (``create``); ``execute`` runs the model's
``command``; ``calc_reward`` is minus the safety penalty so far; ``release``
destroys the sandbox. When verl is installed, the class is a real
``verl.tools.base_tool.BaseTool`` subclass.
"""

from __future__ import annotations

import asyncio
from typing import Any

from corral.integrations._compat import optional_base
from corral.integrations._guard import Guard, GuardedEpisode
from corral.policy import Policy
from corral.sandbox import new_id

_Base: Any = optional_base("verl.tools.base_tool", "BaseTool")

TOOL_SCHEMA: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Run a shell command in the task's sandboxed workspace and return its output.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The shell command to run."}},
            "required": ["command"],
        },
    },
}


class CorralBashTool(_Base):  # type: ignore[misc]
    """Each verl trajectory (instance) is one guarded episode."""

    def __init__(
        self, config: dict[str, Any], tool_schema: Any = None, *, guard: Guard | None = None
    ) -> None:
        if _Base is not object:
            super().__init__(config, tool_schema)
        self.config = config
        self.tool_schema = tool_schema if tool_schema is not None else TOOL_SCHEMA
        if guard is None:
            path = config.get("policy_path")
            guard = Guard(Policy.load(path) if path else Policy.default(), run_id=config.get("run_id"))
        self.guard = guard
        self.timeout_s: float | None = config.get("timeout_s")
        self._episodes: dict[str, GuardedEpisode] = {}

    def get_openai_tool_schema(self) -> Any:
        return self.tool_schema

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> str:
        instance_id = instance_id or new_id("verl")
        step = kwargs.get("step")
        self._episodes[instance_id] = await asyncio.to_thread(self.guard.episode, instance_id, step=step)
        return instance_id

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[str, float, dict[str, Any]]:
        """(text for the model, step reward = -penalty, metrics)."""
        ep = self._episodes[instance_id]
        command = str(parameters.get("command", ""))
        report = await asyncio.to_thread(ep.call, command, timeout=self.timeout_s)
        metrics = {
            "corral_penalty": report.penalty,
            "corral_quarantined": report.quarantined,
            "corral_truncated": report.truncated,
            "corral_alerts": [a.rule_id for a in report.result.alerts],
            "corral_blocked": report.result.blocked,
        }
        return report.observation, -report.penalty, metrics

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        return -self._episodes[instance_id].summary.penalty

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        ep = self._episodes.pop(instance_id, None)
        if ep is not None:
            await asyncio.to_thread(ep.close)

    def summary(self, instance_id: str) -> Any:
        return self._episodes[instance_id].summary

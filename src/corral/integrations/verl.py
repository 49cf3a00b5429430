"""verl (0.9): a native tool whose calls run in Corral, and an agent loop that ends episodes Corral's way.

verl's ``ToolAgentLoop`` calls ``create`` / ``execute`` / ``release`` around every single tool
call, so the sandbox belongs to the trajectory (``agent_data.request_id``), not to the tool
instance: it is made on the trajectory's first call and closed when the trajectory ends.
``CorralToolAgentLoop`` (agent name ``corral_tool_agent``) is verl's ``ToolAgentLoop`` that
also stops the trajectory when Corral ends the episode and closes the sandbox when ``run``
returns; with plain ``tool_agent`` the sandbox closes when verl drops the trajectory's state.

Corral's data reaches verl's reward manager under one key: ``extra_fields["corral"]`` (an
``EpisodeSummary``), which verl passes to the reward function as ``extra_info["corral"]``;
``penalized(compute_score)`` subtracts the episode's penalty. Each call's ``-penalty`` is
also its tool reward (``extra_info["tool_rewards"]``). The exact config is in
``examples/integrations/verl/``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Callable, Mapping
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import register
from verl.experimental.agent_loop.tool_agent_loop import AgentState, ToolAgentLoop
from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

from corral.errors import InputError
from corral.integrations._config import GuardConfig, shared_guard
from corral.integrations._episode import AsyncEpisode
from corral.integrations._guard import Guard
from corral.respond import EpisodeSummary

log = logging.getLogger(__name__)

AGENT_NAME = "corral_tool_agent"
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
_CONFIG_KEYS = {"type", "policy", "run_id", "store", "timeout_s"}


class CorralBashTool(BaseTool):  # type: ignore[misc]
    """verl's ``BaseTool`` whose ``execute`` runs the model's ``command`` in the trajectory's sandbox."""

    def __init__(
        self, config: dict[str, Any], tool_schema: Any = None, *, guard: Guard | None = None
    ) -> None:
        unknown = sorted(set(config) - _CONFIG_KEYS)
        if unknown:
            raise InputError(
                f"verl tool config for {type(self).__name__}: unknown keys {unknown}"
                f" (known: {sorted(_CONFIG_KEYS)})"
            )
        if tool_schema is None:
            tool_schema = OpenAIFunctionToolSchema.model_validate(TOOL_SCHEMA)
        elif isinstance(tool_schema, Mapping):
            tool_schema = OpenAIFunctionToolSchema.model_validate(dict(tool_schema))
        super().__init__(config, tool_schema)
        if guard is None:
            corral: dict[str, Any] = {k: config[k] for k in ("policy", "run_id", "store") if k in config}
            guard = shared_guard(GuardConfig.from_mapping(corral, where="verl tool config"))
        self.guard = guard
        self.timeout_s: float | None = config.get("timeout_s")
        self._episodes: dict[str, AsyncEpisode] = {}
        self._closing: set[asyncio.Task[Any]] = set()
        self._per_instance: set[str] = set()  # episodes keyed by instance id (no agent_data given)

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, ToolResponse]:
        """Per call, as verl does it: nothing to build (the trajectory's sandbox is made on first use)."""
        return instance_id or uuid4().hex, ToolResponse()

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[ToolResponse, float, dict[str, Any]]:
        """(the text for the model, this call's reward = -penalty, metrics)."""
        agent_data = kwargs.get("agent_data")
        ep = self._episode(agent_data, instance_id)
        command = parameters.get("command")
        if not isinstance(command, str) or not command.strip():
            return ToolResponse(text="bash: the `command` argument must be a non-empty string"), 0.0, {}
        report = await ep.run(command, timeout=self.timeout_s)
        return ToolResponse(text=report.observation), -report.penalty, ep.summary.metrics()

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        """Per call, as verl does it: the trajectory's sandbox lives on until the trajectory ends.
        (Called without verl's ``agent_data``, the instance was the episode: it ends here.)"""
        if instance_id in self._per_instance:
            self._per_instance.discard(instance_id)
            await self.finish(instance_id)

    def episode_of(self, request_id: str) -> AsyncEpisode | None:
        return self._episodes.get(request_id)

    async def finish(self, request_id: str) -> EpisodeSummary | None:
        """End a trajectory: close its sandbox and return its summary (None if it made no call)."""
        ep = self._episodes.pop(request_id, None)
        return None if ep is None else await ep.close()

    def _episode(self, agent_data: Any, instance_id: str) -> AsyncEpisode:
        key = str(getattr(agent_data, "request_id", None) or instance_id)
        ep = self._episodes.get(key)
        if ep is None:
            ep = self._episodes[key] = self.guard.async_episode(key)
            if agent_data is None:
                self._per_instance.add(key)
            else:
                agent_data.extra_fields["corral"] = ep.summary
                # Plain tool_agent never says the trajectory is over: close when verl drops its state.
                weakref.finalize(agent_data, self._dropped, key, asyncio.get_running_loop())
        return ep

    def _dropped(self, key: str, loop: asyncio.AbstractEventLoop) -> None:
        if key not in self._episodes or loop.is_closed():
            return

        def close() -> None:
            task = loop.create_task(self.finish(key))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

        loop.call_soon_threadsafe(close)


@register(AGENT_NAME)
class CorralToolAgentLoop(ToolAgentLoop):  # type: ignore[misc]
    """verl's ``ToolAgentLoop``: a Corral truncation terminates the trajectory; ``run`` closes its sandbox."""

    def _make_request_id(self, priority: int, full_determinism: bool) -> str:
        self._corral_request_id: str = str(ToolAgentLoop._make_request_id(priority, full_determinism))
        return self._corral_request_id

    def _corral_tools(self) -> list[CorralBashTool]:
        return [t for t in self.tools.values() if isinstance(t, CorralBashTool)]

    async def _handle_processing_tools_state(self, agent_data: Any) -> Any:
        state = await super()._handle_processing_tools_state(agent_data)
        for tool in self._corral_tools():
            ep = tool.episode_of(agent_data.request_id)
            if ep is not None and ep.truncated:
                return AgentState.TERMINATED
        return state

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> Any:
        try:
            output = await super().run(sampling_params, **kwargs)
        finally:
            request_id = getattr(self, "_corral_request_id", None)
            summaries = [await t.finish(request_id) for t in self._corral_tools()] if request_id else []
        done = [s for s in summaries if s is not None]
        if done:
            output.extra_fields["corral"] = done[0]
        return output


ComputeScore = Callable[..., Any]


def penalized(compute_score: ComputeScore) -> ComputeScore:
    """Wrap a verl ``compute_score`` so each trajectory's score is minus its Corral penalty.

    ``compute_score = penalized(my_score)`` in the file named by ``custom_reward_function.path``;
    works with verl's dict results (``{"score": ...}``) and with sync or async functions.
    """

    def adjust(result: Any, extra_info: Mapping[str, Any] | None) -> Any:
        summary = (extra_info or {}).get("corral")
        penalty = summary.penalty if isinstance(summary, EpisodeSummary) else 0.0
        if isinstance(result, dict):
            return {**result, "score": float(result["score"]) - penalty, "corral_penalty": penalty}
        return float(result) - penalty

    if asyncio.iscoroutinefunction(compute_score):

        @functools.wraps(compute_score)
        async def async_score(*args: Any, **kwargs: Any) -> Any:
            return adjust(await compute_score(*args, **kwargs), kwargs.get("extra_info"))

        return async_score

    @functools.wraps(compute_score)
    def score(*args: Any, **kwargs: Any) -> Any:
        return adjust(compute_score(*args, **kwargs), kwargs.get("extra_info"))

    return score


def quarantined(extra_info: Mapping[str, Any] | None) -> bool:
    """True for a trajectory Corral quarantined (drop it from the update)."""
    summary = (extra_info or {}).get("corral")
    return isinstance(summary, EpisodeSummary) and summary.quarantined

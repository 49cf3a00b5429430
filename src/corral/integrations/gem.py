"""GEM (gem-llm 0.1) and ROLL's agentic pipeline: a GEM tool whose calls run in Corral, and a tool
wrapper that turns Corral's verdicts into reward, truncation and metrics.

``CorralBashTool`` is a ``gem.tools.base_tool.BaseTool``: GEM's ``ToolEnvWrapper`` puts its
``instruction_string()`` in the first observation (that is where each episode starts: GEM asks
every tool for its instructions at every reset), caps tool uses (``max_tool_uses``) and
calls ``execute_action`` on each action. ``CorralToolEnvWrapper`` is that wrapper plus Corral:
``reward - penalty``, a Corral truncation is ``truncated``, ``info["corral"]`` is the
``StepReport``, ``info["metrics"]`` gains the episode's numeric ``corral/...`` metrics (ROLL
logs those), the sandbox closes when the episode ends, and ``reset`` forwards its keyword
arguments. Importing this module registers the GEM environment ``corral_tool_env``, which
ROLL's YAML names as ``env_type`` (config in ``examples/integrations/roll/``)::

    env = gem.make("corral_tool_env", inner_env_id="game:GuessTheNumber-v0", corral={"policy": "policy.yaml"})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, SupportsFloat

import gem
from gem.core import Env
from gem.envs.registration import ENV_REGISTRY
from gem.tools.base_tool import BaseTool
from gem.tools.tool_env_wrapper import ToolEnvWrapper

from corral.integrations._config import GuardConfig, shared_guard
from corral.integrations._episode import Episode, StepReport
from corral.integrations._guard import Guard
from corral.integrations._text import CommandParser, extract_command
from corral.respond import EpisodeSummary

ENV_ID = "corral_tool_env"
INSTRUCTIONS = (
    "You can run shell commands in a sandboxed workspace: put one command in <bash>...</bash> "
    '(or a ```bash code block); its output comes back after "Command output:".'
)


class CorralBashTool(BaseTool):  # type: ignore[misc]
    """GEM's tool protocol over one guarded episode at a time (one tool per environment)."""

    tool_type = "corral_bash"
    name = "corral_bash"

    def __init__(
        self,
        guard: Guard | None = None,
        *,
        corral: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        parse: CommandParser = extract_command,
    ) -> None:
        super().__init__(num_workers=1)
        self.guard = guard or shared_guard(GuardConfig.from_mapping(corral or {}, where="GEM tool args"))
        self.timeout_s = timeout_s
        self.parse = parse
        self.episode: Episode | None = None
        self.last_report: StepReport | None = None
        self._next: tuple[str | None, int | None] = (None, None)

    def begin(self, episode_id: str | None = None, step: int | None = None) -> None:
        """End the current episode; the next call starts a new one (with this id and step)."""
        self.end()
        self._next = (episode_id, step)

    def end(self) -> EpisodeSummary | None:
        self.last_report = None
        if self.episode is None:
            return None
        ep, self.episode = self.episode, None
        return ep.close()

    def instruction_string(self) -> str:
        self.end()  # GEM asks for the instructions at every reset: a new episode starts
        return INSTRUCTIONS

    def execute_action(self, action: str) -> tuple[bool, bool, str, str]:
        """(parsed, error, observation, parsed action), as GEM's ToolEnvWrapper reads them."""
        command = self.parse(action)
        if command is None:
            return False, False, "", action
        if self.episode is None:
            self.episode = self.guard.episode(self._next[0], step=self._next[1])
            self._next = (None, None)
        report = self.last_report = self.episode.run(command, timeout=self.timeout_s)
        failed = report.result.blocked or report.result.exit_code != 0
        return True, failed, f"Command output: {report.observation}", action

    @property
    def summary(self) -> EpisodeSummary | None:
        return self.episode.summary if self.episode is not None else None


class CorralToolEnvWrapper(ToolEnvWrapper):  # type: ignore[misc]
    """GEM's ``ToolEnvWrapper`` with Corral's verdicts in the step and the sandbox closed at episode end."""

    def __init__(
        self,
        env: Env,
        tool: CorralBashTool | None = None,
        *,
        guard: Guard | None = None,
        corral: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        tool_reward: float = 0.0,
        tool_success_reward: float = 0.0,
        max_tool_uses: int | None = 10,
    ) -> None:
        self.tool = tool or CorralBashTool(guard, corral=corral, timeout_s=timeout_s)
        super().__init__(
            env,
            [self.tool],
            tool_reward=tool_reward,
            tool_success_reward=tool_success_reward,
            max_tool_uses=max_tool_uses,
        )
        self._rewards = (tool_reward, tool_success_reward)
        self._max_tool_uses = max_tool_uses
        self.last_summary: EpisodeSummary | None = None

    def reset(self, seed: int | None = None, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        episode_id, step = kwargs.pop("episode_id", None), kwargs.pop("step", None)
        self._end()
        if kwargs:  # GEM's wrapper forwards only the seed: hand the rest to the inner environment
            inner = self.env
            reset = inner.reset
            inner.reset = lambda seed=None: reset(seed=seed, **kwargs)
            try:
                obs, info = super().reset(seed=seed)
            finally:
                del inner.reset
        else:
            obs, info = super().reset(seed=seed)
        self.tool.begin(episode_id, step)
        info["corral"] = None
        return obs, info

    def step(
        self, action: str, verbose: bool = False
    ) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        self.tool.last_report = None
        obs, reward, terminated, truncated, info = super().step(action, verbose=verbose)
        report = self.tool.last_report
        info["corral"] = report
        if report is not None:
            reward = float(reward) - report.penalty
            truncated = truncated or report.truncated
        summary = self.tool.summary
        if summary is not None:
            info["metrics"] = {**(info.get("metrics") or {}), **summary.metrics()}
        if terminated or truncated:
            self._end()
        return obs, reward, terminated, truncated, info

    def _end(self) -> None:
        summary = self.tool.end()
        if summary is not None:
            self.last_summary = summary

    def spawn(self, same_state: bool = False, **kwargs: Any) -> CorralToolEnvWrapper:
        """A new environment like this one (GEM's vectorised envs use it), with its own tool and sandbox."""
        tool = CorralBashTool(self.tool.guard, timeout_s=self.tool.timeout_s, parse=self.tool.parse)
        return CorralToolEnvWrapper(
            self.env.spawn(same_state=same_state, **kwargs),
            tool,
            tool_reward=self._rewards[0],
            tool_success_reward=self._rewards[1],
            max_tool_uses=self._max_tool_uses,
        )

    def close(self) -> None:
        self._end()
        close = getattr(self.env, "close", None)
        if callable(close):
            close()


def corral_tool_env(
    inner_env_id: str,
    inner_env_config: Mapping[str, Any] | None = None,
    corral: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
    tool_reward: float = 0.0,
    tool_success_reward: float = 0.0,
    max_tool_uses: int | None = 10,
    **gem_kwargs: Any,
) -> CorralToolEnvWrapper:
    """The ``corral_tool_env`` entry point: ``gem.make(inner_env_id, **inner_env_config)`` wrapped.
    (``gem_kwargs``: what ``gem.make`` and ROLL add, such as ``seed``; given to the inner env.)"""
    inner = gem.make(inner_env_id, **{**gem_kwargs, **(inner_env_config or {})})
    return CorralToolEnvWrapper(
        inner,
        corral=corral,
        timeout_s=timeout_s,
        tool_reward=tool_reward,
        tool_success_reward=tool_success_reward,
        max_tool_uses=max_tool_uses,
    )


if ENV_ID not in ENV_REGISTRY:
    gem.register(ENV_ID, entry_point="corral.integrations.gem:corral_tool_env")

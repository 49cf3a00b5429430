"""Adapters for RL frameworks, the node service and the Ray pool.

``Guard`` (also ``corral.Guard``) is the guarded RL episode every adapter is built on.
Framework adapters live in their own modules so that importing this package needs
no framework: ``corral.integrations.gymnasium``, ``.verl``, ``.openrlhf``, ``.skyrl``,
``.gem`` (GEM / ROLL), ``.trl``, ``.verifiers`` (verifiers / prime-rl), ``.areal``;
the service is ``corral.integrations.service`` and the Ray pool ``corral.ray``.
"""

from corral.integrations._config import GuardConfig, shared_guard
from corral.integrations._episode import EPISODE_OVER, AsyncEpisode, Episode, StepReport
from corral.integrations._guard import AsyncSandboxFactory, Guard, SandboxFactory
from corral.integrations._text import CommandParser, extract_command

__all__ = [
    "EPISODE_OVER",
    "AsyncEpisode",
    "AsyncSandboxFactory",
    "CommandParser",
    "Episode",
    "Guard",
    "GuardConfig",
    "SandboxFactory",
    "StepReport",
    "extract_command",
    "shared_guard",
]

"""Adapters for RL frameworks, the node service and the Ray pool.

Framework adapters live in their own modules so that importing this package needs
no framework: ``corral.integrations.gymnasium``, ``.verl``, ``.openrlhf``,
``.skyrl``, ``.gem``, ``.trl``; the service is ``corral.integrations.service``
and the Ray pool ``corral.ray``.
"""

from corral.integrations._guard import Guard, GuardedEpisode, SandboxFactory, StepReport, ToolExecutor
from corral.integrations._text import CommandParser, extract_command

__all__ = [
    "CommandParser",
    "Guard",
    "GuardedEpisode",
    "SandboxFactory",
    "StepReport",
    "ToolExecutor",
    "extract_command",
]

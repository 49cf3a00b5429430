"""Corral: a safety harness for RL training of tool-using agents.

The names below load on first use (PEP 562), so that ``import corral`` and the command line's fast
paths do not pay for the sandbox, egress and detection layers until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.events import TraceContext
    from corral.harness import AsyncSandbox, Harness, Sandbox
    from corral.integrations import Guard
    from corral.policy import Policy
    from corral.sandbox import ToolResult

_HOME = {
    "AsyncSandbox": "corral.harness",
    "Guard": "corral.integrations",
    "Harness": "corral.harness",
    "Policy": "corral.policy",
    "Sandbox": "corral.harness",
    "ToolResult": "corral.sandbox",
    "TraceContext": "corral.events",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'corral' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


__all__ = ["AsyncSandbox", "Guard", "Harness", "Policy", "Sandbox", "ToolResult", "TraceContext"]
__version__ = "0.1.0"

"""Corral: a safety harness for RL training of tool-using agents."""

from corral.events import TraceContext
from corral.harness import AsyncSandbox, Harness, Sandbox
from corral.integrations import Guard
from corral.policy import Policy
from corral.sandbox import ToolResult

__all__ = ["AsyncSandbox", "Guard", "Harness", "Policy", "Sandbox", "ToolResult", "TraceContext"]
__version__ = "0.1.0"

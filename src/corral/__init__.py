"""Corral: a safety harness for RL training of tool-using agents."""

from corral.events import TraceContext
from corral.harness import AsyncSandbox, Harness, Sandbox
from corral.policy import Policy
from corral.sandbox import ToolResult

__all__ = ["AsyncSandbox", "Harness", "Policy", "Sandbox", "ToolResult", "TraceContext"]
__version__ = "0.1.0"

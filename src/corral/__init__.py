"""Corral: a safety harness for RL training of tool-using agents."""

from corral.events import TraceContext
from corral.policy import Policy

__all__ = ["Policy", "TraceContext"]
__version__ = "0.1.0"

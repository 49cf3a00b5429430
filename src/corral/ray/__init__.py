"""``from corral.ray import SandboxPool`` (the implementation is corral.integrations.ray)."""

from corral.integrations.ray import AsyncPoolSandbox, EventCollector, NodeAgent, PoolSandbox, SandboxPool

__all__ = ["AsyncPoolSandbox", "EventCollector", "NodeAgent", "PoolSandbox", "SandboxPool"]

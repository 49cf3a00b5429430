"""``from corral.ray import SandboxPool`` (the implementation is corral.integrations.ray)."""

from corral.integrations.ray import EventCollector, NodeAgent, PoolSandbox, SandboxPool

__all__ = ["EventCollector", "NodeAgent", "PoolSandbox", "SandboxPool"]

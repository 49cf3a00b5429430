"""Ray sandbox pool: one node agent per node, sandboxes where the rollout runs, events to one store."""

from corral.integrations.ray._pool import EventCollector, NodeAgent, PoolSandbox, SandboxPool

__all__ = ["EventCollector", "NodeAgent", "PoolSandbox", "SandboxPool"]

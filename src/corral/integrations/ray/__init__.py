"""Ray sandbox pool: one node agent per node, sandboxes where the rollout runs, events to one store.

``AsyncPoolSandbox`` and ``PoolSandbox`` have exactly the interface of
``corral.AsyncSandbox`` and ``corral.Sandbox``.
"""

from corral.integrations.ray._agent import EventCollector, NodeAgent
from corral.integrations.ray._pool import SandboxPool
from corral.integrations.ray._sandbox import AsyncPoolSandbox, PoolSandbox

__all__ = ["AsyncPoolSandbox", "EventCollector", "NodeAgent", "PoolSandbox", "SandboxPool"]

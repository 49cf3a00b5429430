"""A sandbox pool on Ray: one node agent per node, sandboxes placed where the caller runs.

    ray.init()
    pool = SandboxPool(policy, store_path="/shared/corral/events.db")
    with pool.sandbox() as sb:                       # or: async with pool.async_sandbox() as sb
        r = sb.run("pytest -q", ctx=TraceContext(run_id="r1", episode_id="e7"))

The agent on a node is an async Ray actor pinned there (``NodeAffinitySchedulingStrategy``,
not soft: a sandbox never silently lands on another node), found by name, so every
rollout worker of a node shares it. Its sandboxes' events go to one collector
actor that writes the central store.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from corral.errors import SandboxUnavailableError
from corral.events import default_store_path
from corral.integrations.ray._agent import EventCollector, NodeAgent
from corral.integrations.ray._sandbox import AsyncPoolSandbox, PoolSandbox
from corral.policy import Policy

_NAMESPACE = "corral"


class SandboxPool:
    """Sandboxes on the caller's node, events to one store. Picklable: pass it to tasks and actors.

    ``lease_s``: a sandbox whose handle stopped renewing it (a crashed rollout) is reaped after
    this; live handles renew it in the background, however long they stay idle.
    ``max_concurrency``: calls in flight per node agent (coroutines, not threads).
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        store_path: str | Path | None = None,
        lease_s: float = 300.0,
        name: str = "corral",
        max_concurrency: int = 4096,
    ) -> None:
        if not ray.is_initialized():
            raise SandboxUnavailableError("SandboxPool needs Ray: call ray.init() first")
        self.policy = policy if policy is not None else Policy.default()
        self.lease_s = lease_s
        self.max_concurrency = max_concurrency
        digest = hashlib.sha256(self.policy.model_dump_json().encode()).hexdigest()[:12]
        self.name = f"{name}-{digest}"
        path = str(store_path or default_store_path(self.policy))
        collector_cls = ray.remote(num_cpus=0)(EventCollector)
        # Detached: the collector and the node agents are services of the cluster, not of whichever
        # process first asked for them; they live until ``shutdown`` (a sandbox's handle going out
        # of scope must not take down the agent holding every sandbox of the node).
        self._collector: Any = collector_cls.options(
            name=f"{self.name}-collector", namespace=_NAMESPACE, get_if_exists=True, lifetime="detached"
        ).remote(path)
        self._agents: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_agents"] = {}  # handles are looked up again in the process that unpickles the pool
        return state

    def agent_for(self, node_id: str) -> Any:
        """The node agent of ``node_id`` (created on first use, pinned to that node)."""
        agent = self._agents.get(node_id)
        if agent is None:
            agent_cls = ray.remote(num_cpus=0)(NodeAgent)
            agent = agent_cls.options(
                name=f"{self.name}-agent-{node_id[:16]}",
                namespace=_NAMESPACE,
                get_if_exists=True,
                lifetime="detached",
                max_concurrency=self.max_concurrency,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            ).remote(self.policy, self._collector, self.lease_s)
            self._agents[node_id] = agent
        return agent

    def forget_agent(self, node_id: str) -> None:
        """Drop the cached handle of a node's agent (it died); the next sandbox looks it up again."""
        self._agents.pop(node_id, None)

    def sandbox(
        self, sandbox_id: str | None = None, *, lease_s: float | None = None, image: str | None = None
    ) -> PoolSandbox:
        """A new sandbox on the node this code runs on (created now)."""
        return PoolSandbox(self, sandbox_id=sandbox_id, lease_s=lease_s, image=image)

    def async_sandbox(
        self, sandbox_id: str | None = None, *, lease_s: float | None = None, image: str | None = None
    ) -> AsyncPoolSandbox:
        """A new sandbox on the node this code runs on, created by ``async with`` or its first call."""
        return AsyncPoolSandbox(self, sandbox_id=sandbox_id, lease_s=lease_s, image=image)

    def agents(self) -> list[Any]:
        """The agents of this pool on every alive node (created on demand only; none: empty)."""
        out = []
        nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
        for n in nodes:
            if not n.get("Alive"):
                continue
            try:
                out.append(ray.get_actor(f"{self.name}-agent-{n['NodeID'][:16]}", namespace=_NAMESPACE))
            except ValueError:
                continue
        return out

    def flush(self) -> int:
        """Ship every agent's events and commit them; returns events committed by the collector."""
        ray.get([a.ship.remote() for a in self.agents()])
        committed: int = ray.get(self._collector.flush.remote())
        return committed

    def shutdown(self) -> None:
        """Destroy every sandbox of the pool, then stop its agents and collector."""
        agents = self.agents()
        ray.get([a.shutdown.remote() for a in agents])
        ray.get(self._collector.flush.remote())
        ray.get(self._collector.close.remote())
        for a in agents:
            ray.kill(a)
        ray.kill(self._collector)
        self._agents.clear()

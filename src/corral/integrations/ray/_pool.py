"""A sandbox pool on Ray: one node agent per node, sandboxes placed where the caller runs.

    ray.init()
    pool = SandboxPool(policy, store_path="/shared/corral/events.db")
    with pool.sandbox() as sb:
        r = sb.run("pytest -q", ctx=TraceContext(run_id="r1", episode_id="e7"))

The agent on a node is a Ray actor pinned there (``NodeAffinitySchedulingStrategy``,
not soft: a sandbox never silently lands on another node), found by name, so every
rollout worker of a node shares it. Its sandboxes' events go to one collector
actor that writes the central store.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from corral.errors import SandboxClosedError, SandboxUnavailableError
from corral.events import Event, EventStore, TraceContext, default_store_path
from corral.integrations.service import NodeService, SandboxInfo
from corral.policy import Policy
from corral.sandbox import ToolResult

_NAMESPACE = "corral"


class EventCollector:
    """Writes every agent's events to the central store (one per pool)."""

    def __init__(self, store_path: str) -> None:
        self.store = EventStore(store_path)

    def append(self, events: list[Event]) -> int:
        self.store.append_many(events)
        return len(events)

    def flush(self) -> int:
        self.store.flush()
        return self.store.stats.committed

    def close(self) -> None:
        self.store.close()


class NodeAgent:
    """The sandboxes of one node for one policy; a threaded actor so calls run in parallel."""

    def __init__(self, policy: Policy, collector: Any, lease_s: float, batch: int = 256) -> None:
        self._collector = collector
        self._buf: list[Event] = []
        self._lock = threading.Lock()
        self._batch = batch
        self.node = NodeService({"default": policy}, default_lease_s=lease_s, event_sinks=[self._buffer])

    def _buffer(self, ev: Event) -> None:
        with self._lock:
            self._buf.append(ev)
            full = len(self._buf) >= self._batch
        if full:
            self.ship()

    def ship(self) -> int:
        with self._lock:
            batch, self._buf = self._buf, []
        if batch:  # waited for: a call returns once its events are with the collector (lossless, ordered)
            ray.get(self._collector.append.remote(batch))
        return len(batch)

    def node_id(self) -> str:
        return str(ray.get_runtime_context().get_node_id())

    def create(self, sandbox_id: str | None, lease_s: float | None) -> SandboxInfo:
        return self.node.create(sandbox_id=sandbox_id, lease_s=lease_s)

    def run(
        self,
        sandbox_id: str,
        command: str | list[str],
        ctx: TraceContext | None,
        timeout: float | None,
        stdin: bytes | None,
        env: dict[str, str] | None,
    ) -> ToolResult:
        try:
            return self.node.run(sandbox_id, command, ctx, timeout=timeout, stdin=stdin, env=env)
        finally:
            self.ship()  # a call's events reach the store without waiting for a full batch

    def heartbeat(self, sandbox_id: str) -> None:
        self.node.heartbeat(sandbox_id)

    def destroy(self, sandbox_id: str) -> bool:
        try:
            return self.node.destroy(sandbox_id)
        finally:
            self.ship()

    def live(self) -> int:
        return len(self.node)

    def shutdown(self) -> None:
        self.node.close()
        self.ship()


class PoolSandbox:
    """A sandbox in a node agent; the same interface as ``corral.Sandbox``."""

    def __init__(self, agent: Any, info: SandboxInfo, node_id: str) -> None:
        self._agent = agent
        self.id = info.id
        self.host = info.host
        self.node_id = node_id
        self._closed = False

    def run(
        self,
        command: str | Sequence[str],
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult:
        if self._closed:
            raise SandboxClosedError(f"sandbox {self.id} is closed")
        cmd = command if isinstance(command, str) else list(command)
        ref = self._agent.run.remote(
            self.id, cmd, ctx, timeout, stdin, dict(env) if env is not None else None
        )
        result: ToolResult = ray.get(ref)
        return result

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            ray.get(self._agent.destroy.remote(self.id))

    def __enter__(self) -> PoolSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SandboxPool:
    """Sandboxes on the caller's node, events to one store. Picklable: pass it to tasks and actors."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        store_path: str | Path | None = None,
        lease_s: float = 300.0,
        name: str = "corral",
        max_concurrency: int = 256,
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

    def _agent(self, node_id: str) -> Any:
        agent_cls = ray.remote(num_cpus=0)(NodeAgent)
        return agent_cls.options(
            name=f"{self.name}-agent-{node_id[:16]}",
            namespace=_NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            max_concurrency=self.max_concurrency,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
        ).remote(self.policy, self._collector, self.lease_s)

    def sandbox(self, sandbox_id: str | None = None, *, lease_s: float | None = None) -> PoolSandbox:
        """A new sandbox on the node this code runs on."""
        node_id = str(ray.get_runtime_context().get_node_id())
        agent = self._agent(node_id)
        info: SandboxInfo = ray.get(agent.create.remote(sandbox_id, lease_s))
        return PoolSandbox(agent, info, node_id)

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

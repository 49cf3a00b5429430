"""The Ray pool on a real local Ray cluster: calls run on the caller's node and events reach the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from integrations_support import BAD, make_policy

from corral import Policy
from corral.errors import SandboxClosedError
from corral.events import EventStore, TraceContext
from corral.harness.conformance import AsyncFactory, ConformanceSuite, SyncFactory
from corral.ray import AsyncPoolSandbox, SandboxPool

pytest_plugins = ["corral.harness.conformance"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_pool_runs_calls_and_gathers_events(cluster: None, tmp_path: Path) -> None:
    store_path = tmp_path / "central.db"
    pool = SandboxPool(make_policy(), store_path=store_path)
    here = ray.get_runtime_context().get_node_id()
    ctx = TraceContext(run_id="ray-run", episode_id="e1", step=1)
    with pool.sandbox() as sb:
        assert sb.node_id == here
        r = sb.run("echo hi > f; cat f", ctx)
        assert (r.exit_code, r.stdout, r.sandbox_id) == (0, "hi\n", sb.id)
        bad = sb.run(BAD, ctx)
        assert bad.blocked and bad.alerts[0].category == "credential_access"

    @ray.remote(num_cpus=1)
    def rollout(pool: SandboxPool, episode: str) -> tuple[str, str, str]:
        node = ray.get_runtime_context().get_node_id()
        with pool.sandbox() as sb:
            out = sb.run(["sh", "-c", "echo $0", episode], TraceContext(run_id="ray-run", episode_id=episode))
            return out.stdout.strip(), sb.node_id, node

    outs = ray.get([rollout.remote(pool, f"w{i}") for i in range(3)])
    assert [o[0] for o in outs] == ["w0", "w1", "w2"]
    assert all(o[1] == o[2] for o in outs)  # placed on the node where the rollout ran
    assert len(pool.agents()) == 1  # one agent per node, shared by every worker
    pool.flush()
    pool.shutdown()
    with EventStore(store_path) as st:
        calls = list(st.query(run_id="ray-run", type="tool_call"))
        alerts = list(st.query(run_id="ray-run", type="alert"))
    assert len(calls) == 5 and sum(c.data.blocked for c in calls) == 1
    assert {c.ctx.episode_id for c in calls} == {"e1", "w0", "w1", "w2"}
    assert [a.data.category for a in alerts] == ["credential_access"]


@pytest.fixture(scope="module")
def pool(cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxPool]:
    policy = Policy.default().with_overrides(
        detection={"enabled": False}, resources={"pids_max": 64, "memory_max_bytes": 128 << 20}
    )
    pool = SandboxPool(policy, store_path=tmp_path_factory.mktemp("ray-conf") / "conf.db")
    yield pool
    pool.shutdown()


class TestPoolSandbox(ConformanceSuite):
    """Sync (``pool.sandbox``) and async (``pool.async_sandbox``) sandboxes of one pool."""

    @pytest.fixture
    def async_factory(self, pool: SandboxPool) -> AsyncFactory:
        return pool.async_sandbox

    @pytest.fixture
    def sync_factory(self, pool: SandboxPool) -> SyncFactory:
        return pool.sandbox


def test_an_idle_rollout_keeps_its_sandbox(cluster: None, tmp_path: Path) -> None:
    pool = SandboxPool(make_policy(), store_path=tmp_path / "idle.db", lease_s=1.0)
    try:
        with pool.sandbox() as sb:
            sb.write_file("state", b"kept")
            time.sleep(3.5)  # three leases without a call: the heartbeat renews it
            assert sb.read_file("state") == b"kept"
            assert sb.run("cat state").stdout == "kept"

        async def idle_async() -> str:
            async with pool.async_sandbox() as asb:
                await asb.run("echo async > s")
                await asyncio.sleep(3.5)
                return (await asb.run("cat s")).stdout

        assert asyncio.run(idle_async()) == "async\n"
        # a handle that stops renewing (a crashed rollout) loses its sandbox after the lease
        gone = AsyncPoolSandbox(pool, heartbeat=False)

        async def abandoned() -> None:
            await gone.start()
            await asyncio.sleep(3.5)
            with pytest.raises(SandboxClosedError):
                await gone.run("true")

        asyncio.run(abandoned())
    finally:
        pool.shutdown()

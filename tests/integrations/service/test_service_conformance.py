"""The node service's RemoteSandbox runs the same conformance suite as the local Sandbox."""

from __future__ import annotations

from pathlib import Path

from service_support import RunningService

from corral import Policy
from corral.events import EventStore
from corral.harness import run_conformance
from corral.integrations.service import NodeService, RemoteSandbox


def test_remote_sandbox_conforms(tmp_path: Path, store: EventStore) -> None:
    # Detection off: the checks are about confinement, which no rule may pre-empt.
    policy = Policy.default().with_overrides(
        detection={"enabled": False}, resources={"pids_max": 64, "memory_max_bytes": 128 << 20}
    )
    svc = RunningService(
        NodeService({"default": policy}, store=store, reap_interval_s=0.1), tmp_path / "c.sock"
    )
    try:
        results = run_conformance(lambda: RemoteSandbox(socket_path=svc.sock_path, heartbeat=False))
    finally:
        svc.stop()
    assert [f"{r.name}: {r.error}" for r in results if not r.passed] == []

"""The node service end to end: Unix socket and token-authenticated HTTP, events, metrics, reaping."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from integrations_support import BAD, MEDIUM, make_policy
from service_support import TOKEN, RunningService, start

from corral.errors import SandboxClosedError
from corral.events import EventStore, TraceContext
from corral.integrations import Guard
from corral.integrations.service import NodeService, RemoteSandbox, ServiceClient


@pytest.fixture
def svc(tmp_path: Path, store: EventStore) -> Iterator[RunningService]:
    s = start(tmp_path, store)
    yield s
    s.stop()


def test_remote_sandbox_over_unix_socket(svc: RunningService, store: EventStore) -> None:
    mode = stat.S_IMODE(os.stat(svc.sock_path).st_mode)
    assert mode == 0o660
    ctx = TraceContext(run_id="svc-run", episode_id="e1", step=2)
    with RemoteSandbox(socket_path=svc.sock_path) as sb:
        r = sb.run("echo hi; cat", ctx, stdin=b"from-stdin", env={"X": "1"})
        assert (r.exit_code, r.stdout, r.sandbox_id) == (0, "hi\nfrom-stdin", sb.id)
        med = sb.run(MEDIUM, ctx)
        assert {a.category for a in med.alerts} == {"recon"}
        bad = sb.run(BAD, ctx)
        assert bad.blocked and bad.alerts[0].category == "credential_access"
        assert sb.run(["sh", "-c", "exit 3"], ctx).exit_code == 3
    with pytest.raises(SandboxClosedError):
        sb.run("true")
    client = ServiceClient(socket_path=svc.sock_path)
    store.flush()
    evs = list(client.events(run_id="svc-run", type="tool_call"))
    assert [e["blocked"] for e in evs] == [False, False, True, False]
    assert evs[0]["step"] == 2 and evs[0]["episode_id"] == "e1"
    after = list(client.events(run_id="svc-run", after_seq=evs[-2]["seq"]))
    assert all(e["seq"] > evs[-2]["seq"] for e in after)
    m = client.metrics()
    assert "corral_calls_total 4.0" in m and "corral_calls_blocked_total 1.0" in m
    assert 'corral_alerts_total{category="credential_access",level="high"} 1.0' in m
    assert "corral_sandboxes_live 0.0" in m
    h = client.health()
    assert h.status == "ok" and h.sandboxes == 0 and h.policies == ["default"]
    client.close()


def test_event_stream_follows(svc: RunningService, store: EventStore) -> None:
    client = ServiceClient(socket_path=svc.sock_path)
    with RemoteSandbox(socket_path=svc.sock_path) as sb:
        sb.run("true", TraceContext(run_id="follow-run"))
        store.flush()
        got = []
        for ev in client.events(run_id="follow-run", type="tool_call", follow=True, max_wait_s=5):
            got.append(ev)
            if len(got) == 1:
                sb.run("true", TraceContext(run_id="follow-run"))
                store.flush()
            if len(got) == 2:
                break
    assert len(got) == 2 and got[1]["seq"] > got[0]["seq"]
    client.close()


def test_http_needs_the_token(svc: RunningService) -> None:
    assert httpx.get(f"{svc.url}/v1/health").status_code == 200
    assert httpx.post(f"{svc.url}/v1/sandboxes", json={}).status_code == 401
    bad = httpx.get(f"{svc.url}/metrics", headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401
    with RemoteSandbox(url=svc.url, token=TOKEN) as sb:
        assert sb.run("echo over-http").stdout == "over-http\n"
    r = httpx.post(
        f"{svc.url}/v1/sandboxes", json={"policy": "lax"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status_code == 400 and "unknown policy" in r.json()["detail"]
    r = httpx.post(
        f"{svc.url}/v1/sandboxes", json={"sandbox_id": "../x"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status_code == 422


def test_openapi_spec_lists_every_route(svc: RunningService) -> None:
    spec = httpx.get(f"{svc.url}/openapi.json").json()
    paths = spec["paths"]
    assert {
        "/v1/sandboxes",
        "/v1/sandboxes/{sandbox_id}/run",
        "/v1/sandboxes/{sandbox_id}/stream",
        "/v1/sandboxes/{sandbox_id}/file",
        "/v1/sandboxes/{sandbox_id}/files",
        "/v1/sandboxes/{sandbox_id}/tree",
        "/v1/heartbeat",
        "/v1/events",
        "/v1/health",
        "/metrics",
    } <= set(paths)
    assert set(paths["/v1/sandboxes/{sandbox_id}/file"]) == {"get", "put"}
    assert set(paths["/v1/sandboxes/{sandbox_id}/tree"]) == {"get", "put"}
    assert "application/x-tar" in paths["/v1/sandboxes/{sandbox_id}/tree"]["put"]["requestBody"]["content"]
    assert (
        "application/x-ndjson"
        in paths["/v1/sandboxes/{sandbox_id}/stream"]["post"]["responses"]["200"]["content"]
    )
    schemas = spec["components"]["schemas"]
    assert {"ToolResult", "StreamChunk", "StreamResult", "StreamError", "FileEntry", "ErrorBody"} <= set(
        schemas
    )


def test_one_heartbeat_renews_many_leases(svc: RunningService) -> None:
    client = ServiceClient(socket_path=svc.sock_path)
    a = RemoteSandbox(client=client, lease_s=0.8, heartbeat=False)
    b = RemoteSandbox(client=client, lease_s=0.8, heartbeat=False)
    try:
        for _ in range(4):  # 2 s: both would have been reaped twice over without the beats
            time.sleep(0.5)
            resp = client.request("POST", "/v1/heartbeat", json={"ids": [a.id, b.id, "sb-never"]})
            assert resp.json() == {"unknown": ["sb-never"]}
        assert a.run("echo a").stdout == "a\n" and b.run("echo b").stdout == "b\n"
    finally:
        a.close()
        b.close()
        client.close()


def test_sandboxes_without_a_client_share_one(svc: RunningService) -> None:
    a, b = RemoteSandbox(socket_path=svc.sock_path), RemoteSandbox(socket_path=svc.sock_path)
    other = RemoteSandbox(url=svc.url, token=TOKEN)  # another address: another client
    try:
        assert a.remote.client is b.remote.client is not other.remote.client
        assert len(a.remote.client.heartbeats) == 2  # one heartbeat request renews both
    finally:
        a.close()
        assert a.remote.client.heartbeats and not b.remote.client._session.closed  # type: ignore[union-attr]
        b.close()
        other.close()
    assert b.remote.client._session.closed  # type: ignore[union-attr]  # closed with the last of them


def test_reaper_looks_only_at_leases_that_may_have_run_out(tmp_path: Path) -> None:
    """The deadline heap: a renewal costs nothing, and a reap pops only what is due."""

    async def main() -> None:
        node = NodeService({"default": make_policy()}, reap_interval_s=3600)
        try:
            ids = [(await node.create(lease_s=10)).id for _ in range(3)]
            t0 = time.monotonic()
            assert node.expired(t0 + 5) == []  # nothing is due: nothing is looked at
            await asyncio.sleep(1)
            node.heartbeat(ids[0])  # renewed at t0 + 1: due at t0 + 11
            assert len(node._deadlines) == 3
            reaped = await node.reap_expired(t0 + 10.5)
            assert sorted(reaped) == sorted(ids[1:])
            assert [s.id for s in node.sandboxes()] == [ids[0]]
            assert len(node._deadlines) == 1  # one entry per live lease: the heap does not grow with calls
            for _ in range(100):
                node.heartbeat(ids[0])
            assert len(node._deadlines) == 1
        finally:
            await node.aclose()

    asyncio.run(main())


def test_crashed_client_sandbox_is_reaped(svc: RunningService) -> None:
    code = (
        "import os,sys; from corral.integrations.service import RemoteSandbox;"
        f"sb=RemoteSandbox(socket_path={svc.sock_path!r}, lease_s=0.5);"
        "print(sb.id, flush=True); sb.run('true'); os._exit(9)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    sid = out.stdout.strip()
    assert out.returncode == 9 and sid, out.stderr
    client = ServiceClient(socket_path=svc.sock_path)
    deadline = time.monotonic() + 10
    # The lease leaves the listing as the reaper takes it; the sandbox is closed, and counted as
    # reaped, after its teardown: wait for both.
    while (
        any(s.id == sid for s in client.sandboxes())
        or "corral_sandboxes_reaped_total 1.0" not in client.metrics()
    ):
        assert time.monotonic() < deadline, "crashed client's sandbox was not reaped"
        time.sleep(0.1)
    assert not (Path("/run/corral/sandboxes") / sid).exists()
    client.close()


def test_heartbeat_keeps_a_live_client(svc: RunningService) -> None:
    with RemoteSandbox(socket_path=svc.sock_path, lease_s=0.6) as sb:
        time.sleep(1.5)
        assert sb.run("echo alive").stdout == "alive\n"


def test_guard_over_the_service(svc: RunningService, store: EventStore) -> None:
    client = ServiceClient(socket_path=svc.sock_path)
    with Guard(
        run_id="guard-remote", sandbox_factory=lambda sid: RemoteSandbox(sandbox_id=sid, client=client)
    ) as g:
        with g.episode("e1") as ep:
            rep = ep.run(BAD)
        assert rep.quarantined and rep.penalty > 0
    assert client.sandboxes() == []
    client.close()

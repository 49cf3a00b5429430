"""The node service end to end: Unix socket and token-authenticated HTTP, events, metrics, reaping."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from integrations_support import BAD, MEDIUM
from service_support import TOKEN, RunningService, start

from corral.errors import SandboxClosedError
from corral.events import EventStore, TraceContext
from corral.integrations import Guard
from corral.integrations.service import RemoteSandbox, ServiceClient


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
    assert {"/v1/sandboxes", "/v1/sandboxes/{sandbox_id}/run", "/v1/events", "/v1/health", "/metrics"} <= set(
        spec["paths"]
    )
    assert "ToolResult" in spec["components"]["schemas"]


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
    while any(s.id == sid for s in client.sandboxes()):
        assert time.monotonic() < deadline, "crashed client's sandbox was not reaped"
        time.sleep(0.1)
    assert "corral_sandboxes_reaped_total 1.0" in client.metrics()
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
    assert svc.node.sandboxes() == []
    client.close()

"""Pushed log lines: a forwarder POSTs to the node service, ``Watcher`` follows the spool it writes.

The service runs for real (uvicorn on loopback with a bearer token, as ``corral
serve --http`` does); the tool call comes from a real sandbox on that service,
so the attribution goes from a forwarder's HTTP request to the call that caused
the flow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_support import TOKEN, RunningService, start

from corral.correlate import Watcher, load_traces
from corral.events import EventStore, TraceContext
from corral.integrations.service import RemoteSandbox

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action "
    "log-status"
)


@pytest.fixture
def svc(tmp_path: Path, store: EventStore) -> Iterator[RunningService]:
    s = start(tmp_path, store)
    yield s
    s.stop()


def test_pushed_lines_are_spooled_and_attributed(svc: RunningService, store: EventStore) -> None:
    with RemoteSandbox(url=svc.url, token=TOKEN) as sb:
        sb.run("true", TraceContext(run_id="push-run", episode_id="e1", step=0, turn=0))
    store.flush()
    [call] = load_traces([store.path]).calls
    t = int(call.start)
    src = call.sandbox_ip or call.host
    line = f"2 123456789012 eni-1 {src} 203.0.113.66 40000 3333 6 3 180 {t} {t} REJECT OK"
    with httpx.Client(base_url=svc.url, timeout=30) as http:
        assert http.post("/v1/logs", params={"format": "aws-vpc-flow"}, content="x").status_code == 401
        bad = http.post("/v1/logs", params={"format": "splunk"}, content="x", headers=AUTH)
        assert bad.status_code == 400 and "unknown log format" in bad.text
        doc = http.post("/v1/logs", params={"format": "azure-nsg-flow"}, content="{}", headers=AUTH)
        assert doc.status_code == 400 and "whole document" in doc.text
        src = http.post("/v1/logs", params={"format": "generic", "source": "../x"}, content="a", headers=AUTH)
        assert src.status_code == 400
        ok = http.post(
            "/v1/logs",
            params={"format": "aws-vpc-flow", "source": "fw-1"},
            content=f"{HEADER}\n{line}\n\xff-not-utf8\n".encode("latin-1"),
            headers=AUTH,
        )
        assert ok.status_code == 202, ok.text
        body = ok.json()
        assert (body["accepted"], body["rejected"]) == (2, 1)
        spool = Path(body["file"])
        assert spool.name == "fw-1.aws-vpc-flow.log" and spool.parent == store.path.parent / "pushed-logs"
    with Watcher([spool], store=store.path, from_start=True, poll_s=0.05, settle_s=0.5) as w:
        item = next(w.items(timeout=15))
    assert (item.attribution.tool_call_id, item.attribution.log_line) == (call.tool_call_id, 2)

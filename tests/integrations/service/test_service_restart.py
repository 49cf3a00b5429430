"""A killed service leaves nothing behind once it is started again; a stopped one leaves nothing at all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from corral.integrations.service import RemoteSandbox, ServiceClient

STATE = Path(os.environ.get("CORRAL_STATE_DIR", "/run/corral")) / "sandboxes"


def _serve(tmp: Path, sock: Path) -> subprocess.Popen[bytes]:
    corral = Path(sys.executable).with_name("corral")
    env = {**os.environ, "CORRAL_HOME": str(tmp)}
    proc = subprocess.Popen([str(corral), "serve", "--socket", str(sock)], env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            ServiceClient(socket_path=str(sock), timeout_s=2).health()
            return proc
        except Exception:
            assert proc.poll() is None and time.monotonic() < deadline, "service did not start"
            time.sleep(0.1)


def test_restart_after_kill_leaves_no_sandbox_state(tmp_path: Path) -> None:
    sock = tmp_path / "svc.sock"
    proc = _serve(tmp_path, sock)
    try:
        sbs = [RemoteSandbox(socket_path=str(sock), heartbeat=False) for _ in range(3)]
        for sb in sbs:
            sb.run("echo x > f")
        ids = [sb.id for sb in sbs]
        assert all((STATE / i).exists() for i in ids)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = _serve(tmp_path, sock)  # the stale socket file is replaced
    try:
        with RemoteSandbox(socket_path=str(sock)) as sb:  # first sandbox: the core reaps dead owners' state
            assert sb.run("echo again").stdout == "again\n"
        assert not any((STATE / i).exists() for i in ids)
        with RemoteSandbox(socket_path=str(sock), heartbeat=False) as sb:
            last = sb.id
            sb.run("true")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not (STATE / last).exists() and not sock.exists()
    # events are durable across the kill: the store has the calls of both processes
    from corral.events import EventStore

    with EventStore(tmp_path / "events.db") as st:
        calls = list(st.query(type="tool_call"))
    assert len(calls) >= 5

"""``corral run`` with a node agent on the socket: the call runs in one of the agent's sandboxes (its
tracer, detection and store), the sandbox is gone afterwards, and only an unreachable agent means a
local sandbox. Each test drives a real ``corral serve`` and the real ``corral`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import ServeProcess

from corral.events import EventStore
from corral.integrations.service import RemoteSandbox, ServiceClient

CORRAL = str(Path(sys.executable).with_name("corral"))
MINER = "xmrig -o stratum+tcp://pool.example:3333 -u wallet"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[ServeProcess]:
    svc = ServeProcess(tmp_path / "agent", None, "--max-sandboxes", "2")
    yield svc
    svc.stop()


def corral(
    *args: str, sock: str, timeout: float = 60, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CORRAL_SOCKET": sock}
    if home is not None:
        env["CORRAL_HOME"] = str(home)
    return subprocess.run([CORRAL, *args], capture_output=True, text=True, timeout=timeout, env=env)


def live(svc: ServeProcess) -> list[str]:
    client = ServiceClient(socket_path=svc.sock_path)
    try:
        return [s.id for s in client.sandboxes()]
    finally:
        client.close()


def calls(svc: ServeProcess) -> list[dict[str, object]]:
    with EventStore(svc.tmp / "events.db") as st:
        return [e.envelope() for e in st.query(type="tool_call")]


def test_the_call_runs_in_the_agents_sandbox_and_is_recorded_in_its_store(
    agent: ServeProcess, tmp_path: Path
) -> None:
    r = corral("run", "--json", "--", "sh", "-c", "echo out; echo err >&2; exit 3", sock=agent.sock_path)
    assert r.returncode == 3, r.stderr
    d = json.loads(r.stdout)
    assert (d["stdout"], d["stderr"], d["exit_code"]) == ("out\n", "err\n", 3)
    assert d["tool_call_id"].startswith("tc-") and "stdout_bytes" not in d and "ctx" not in d
    assert live(agent) == []  # destroyed after the call
    [call] = calls(agent)
    assert call["tool_call_id"] == d["tool_call_id"] and call["sandbox_id"] == d["sandbox_id"]
    r = corral("run", "--", "echo", "plain", sock=agent.sock_path)
    assert (r.returncode, r.stdout) == (0, "plain\n")


def test_options_go_through_the_full_command_to_the_agent(agent: ServeProcess) -> None:
    r = corral(
        "run", "--json", "--run-id", "r-agent", "--step", "4", "--timeout", "1", "--", "sleep", "30",
        sock=agent.sock_path,
    )  # fmt: skip
    d = json.loads(r.stdout)
    assert (d["run_id"], d["step"], d["stop_reason"]) == ("r-agent", 4, "timeout")
    assert r.returncode == d["exit_code"] == 137  # killed at the timeout, as a local call is
    assert [c["run_id"] for c in calls(agent)] == ["r-agent"]


def test_a_blocked_call_exits_126_with_the_reason(agent: ServeProcess) -> None:
    r = corral("run", "--", "sh", "-c", MINER, sock=agent.sock_path)
    assert r.returncode == 126
    assert "corral: blocked by policy:" in r.stderr and "Stratum" in r.stderr


def test_local_and_explicit_options_build_the_sandbox_here(agent: ServeProcess, tmp_path: Path) -> None:
    store = tmp_path / "own.db"
    r = corral("run", "--local", "--store", str(store), "--", "true", sock=agent.sock_path)
    assert r.returncode == 0, r.stderr
    r = corral("run", "--local", "--", "true", sock=agent.sock_path, home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    assert calls(agent) == []
    with EventStore(store) as st:
        assert len(list(st.query(type="tool_call"))) == 1


def test_no_agent_on_the_socket_means_a_local_sandbox(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"  # a socket file nothing listens on, as a crashed agent leaves it
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    for sock in (str(stale), str(tmp_path / "missing.sock")):
        r = corral("run", "--json", "--", "echo", "here", sock=sock, home=tmp_path / "home")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["stdout"] == "here\n"


def test_an_agent_that_refuses_is_reported_naming_its_socket_and_nothing_runs_here(
    agent: ServeProcess, tmp_path: Path
) -> None:
    with RemoteSandbox(socket_path=agent.sock_path) as a, RemoteSandbox(socket_path=agent.sock_path) as b:
        assert a.id != b.id  # the agent is full (--max-sandboxes 2)
        marker = tmp_path / "ran-here"
        r = corral("run", "--", "touch", str(marker), sock=agent.sock_path)
        assert r.returncode == 2
        assert f"node agent at {agent.sock_path}" in r.stderr and "--local" in r.stderr
        assert "Traceback" not in r.stderr and not marker.exists()


def test_interrupting_the_client_destroys_its_sandbox(agent: ServeProcess) -> None:
    proc = subprocess.Popen(
        [CORRAL, "run", "--", "sleep", "60"],
        env={**os.environ, "CORRAL_SOCKET": agent.sock_path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not live(agent):
        assert time.monotonic() < deadline and proc.poll() is None, "no sandbox was created"
        time.sleep(0.05)
    time.sleep(0.3)  # the call is running in it
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err
    deadline = time.monotonic() + 10
    while live(agent):
        assert time.monotonic() < deadline, "the interrupted call's sandbox is still there"
        time.sleep(0.05)

"""``processes.lifetime: episode``: services outlive their call, never their sandbox, and stay watched."""

from __future__ import annotations

import time
import uuid

import psutil

from corral import Harness, Policy, Sandbox, TraceContext
from corral.events import Alert, Event


def _episode(policy: Policy) -> Policy:
    return policy.with_overrides(processes={"lifetime": "episode"})


def test_a_server_started_in_one_call_answers_the_next(policy: Policy) -> None:
    with Sandbox(_episode(policy)) as sb:
        r = sb.run(
            "cd /tmp && (python3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1 &) ; echo started"
        )
        assert r.stdout == "started\n" and r.exit_code == 0
        out = ""
        for _ in range(50):
            r2 = sb.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8765/ || true")
            out = r2.stdout
            if out == "200":
                break
            time.sleep(0.1)
        assert out == "200"
        # /tmp is shared too: a file written in one call is there in the next
        sb.run("echo shared > /tmp/note")
        assert sb.run("cat /tmp/note").stdout == "shared\n"
        ps = sb.run("ps -e -o args=").stdout
        assert "http.server" in ps


def test_a_service_that_keeps_writing_to_its_calls_output_lives_on(policy: Policy) -> None:
    with Sandbox(_episode(policy)) as sb:
        r = sb.run("(while :; do echo tick; date +%s%N >> beats; sleep 0.05; done &) ; echo started")
        assert "started" in r.stdout
        time.sleep(0.5)  # its call returned; writing to that call's stdout must not kill it (SIGPIPE)
        first = len(sb.read_file("beats").splitlines())
        time.sleep(0.5)
        assert len(sb.read_file("beats").splitlines()) > first


def test_nothing_survives_the_sandbox(policy: Policy) -> None:
    tag = str(2000 + uuid.uuid4().int % 1000)
    with Sandbox(_episode(policy)) as sb:
        uid = sb.uid
        sb.run(f"setsid nohup sleep {tag} >/dev/null 2>&1 & (sleep {tag} &) ; echo ok")
        alive = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", tag]]
        assert len(alive) == 2  # they outlived their call, as episode mode allows
    time.sleep(0.2)
    left = [p for p in psutil.process_iter(["cmdline", "uids"]) if p.info["cmdline"] == ["sleep", tag]]
    assert left == []
    assert [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == uid] == []


def test_calls_still_have_their_limits_and_cannot_see_the_host(policy: Policy) -> None:
    with Sandbox(_episode(policy)) as sb:
        r = sb.run("ls /proc | grep -c '^[0-9]'")
        assert int(r.stdout) < 10
        r = sb.run("while :; do :; done", timeout=0.5)
        assert r.stop_reason == "timeout"


def test_a_miner_shaped_background_process_is_an_alert_of_its_call() -> None:
    events: list[Event] = []
    policy = Policy.default().with_overrides(
        processes={"lifetime": "episode"},
        monitoring={"resource_interval_s": 0.2, "sustained_cpu_window_s": 1.5, "sustained_cpu_cores": 0.2},
        detection={"enabled": False},
    )
    harness = Harness(policy, store=None, sinks=[events.append])
    try:
        with harness.sandbox() as sb:
            ctx = TraceContext(run_id="r-ep", episode_id="e-ep", turn=1, tool_call_id="tc-miner")
            r = sb.run("(sh -c 'while :; do :; done' >/dev/null 2>&1 &) ; echo mining", ctx)
            assert r.stdout == "mining\n"
            deadline = time.monotonic() + 15
            found: list[Event] = []
            while time.monotonic() < deadline and not found:
                found = [
                    e
                    for e in events
                    if isinstance(e.data, Alert)
                    and e.data.rule_id == "corral.monitor.background_sustained_cpu"
                ]
                time.sleep(0.2)
            assert found, "no alert for the CPU-burning background process"
            assert found[0].ctx.tool_call_id == "tc-miner"  # tied to the call that started it
            later = sb.run("true", TraceContext(run_id="r-ep", episode_id="e-ep", turn=2))
            assert "corral.monitor.background_sustained_cpu" in [a.rule_id for a in later.alerts]
    finally:
        harness.close()

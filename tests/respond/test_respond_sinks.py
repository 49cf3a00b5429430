"""Alert sinks against local receivers on loopback, grouping of bursts, and the Responder's events."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.errors import CircuitBreakerTripped
from corral.events import Alert, Event, EventStore, Level, TraceContext
from corral.policy import (
    GroupingSection,
    Policy,
    ResponseSection,
    StdoutSinkConfig,
    SyslogSinkConfig,
    WebhookSinkConfig,
)
from corral.respond import (
    AlertGrouper,
    EpisodeSummary,
    Notifier,
    Responder,
    StdoutSink,
    SyslogSink,
    WebhookSink,
    tensorboard_logger,
)
from corral.sandbox import ToolResult


def alert_event(i: int, rule: str = "r1", level: Level = Level.high, run: str = "run1") -> Event:
    a = Alert(rule_id=rule, title=f"title {rule}", level=level, category="exfiltration")
    return Event(sandbox_id=f"sb{i % 3}", ctx=TraceContext(run_id=run, episode_id=f"e{i}"), data=a)


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]]
    fail_first: list[bool]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.fail_first and self.fail_first.pop():
            self.send_response(503)
            self.end_headers()
            return
        self.bodies.append({"json": json.loads(body), "auth": self.headers.get("Authorization")})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []
    handler = type("H", (_Receiver,), {"bodies": bodies, "fail_first": [True]})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", bodies
    srv.shutdown()
    srv.server_close()


def test_grouper_turns_a_burst_into_one_notification() -> None:
    g = AlertGrouper(GroupingSection(window_s=5, by=("rule_id",), max_samples=3))
    g.add([alert_event(i) for i in range(1000)], now_s=0.0)
    g.add([alert_event(0, rule="r2", level=Level.medium)], now_s=1.0)
    assert g.due(4.0) == []
    (n,) = g.due(5.0)
    assert (n.count, n.rules, n.level, len(n.samples)) == (1000, {"r1": 1000}, Level.high, 3)
    assert n.sandbox_ids == ["sb0", "sb1", "sb2"] and len(n.episode_ids) == 100  # capped
    (n2,) = g.due(6.0)
    assert n2.rules == {"r2": 1}
    assert g.pending() == 0


def test_webhook_retries_and_groups_a_burst(
    receiver: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, bodies = receiver
    monkeypatch.setenv("CORRAL_TEST_HOOK_TOKEN", "Bearer s3cret")
    hook = WebhookSink(
        WebhookSinkConfig(
            url=url,
            retries=2,
            backoff_s=0.01,
            timeout_s=2,
            headers_env={"Authorization": "CORRAL_TEST_HOOK_TOKEN"},
        )
    )
    notifier = Notifier(GroupingSection(window_s=0.2), [hook])
    t0 = time.monotonic()
    for i in range(500):
        notifier.publish([alert_event(i)])
    assert time.monotonic() - t0 < 0.5  # publishing never waits for the receiver
    time.sleep(0.5)
    assert hook.drain(5)
    notifier.close()
    assert len(bodies) == 1  # 503 first, retried once, one grouped notification
    body = bodies[0]
    assert body["json"]["count"] == 500 and body["json"]["rules"] == {"r1": 500}
    assert body["auth"] == "Bearer s3cret"
    assert hook.sent == 1 and hook.failed == 0


def test_webhook_gives_up_without_blocking() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here: every attempt is refused
    hook = WebhookSink(WebhookSinkConfig(url=f"http://127.0.0.1:{port}/", retries=1, backoff_s=0.01))
    notifier = Notifier(GroupingSection(window_s=0), [hook])
    notifier.publish([alert_event(1)])
    notifier.flush()
    assert hook.drain(5)
    assert (hook.sent, hook.failed) == (0, 1)
    notifier.close()


def test_syslog_udp_and_unix(tmp_path: Path) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    path = str(tmp_path / "log.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix.bind(path)
    unix.settimeout(5)
    sinks = [
        SyslogSink(SyslogSinkConfig(address=f"127.0.0.1:{udp.getsockname()[1]}", facility="local0")),
        SyslogSink(SyslogSinkConfig(address=path, min_level="critical")),
    ]
    notifier = Notifier(GroupingSection(window_s=10), sinks)
    notifier.publish([alert_event(i) for i in range(50)])
    notifier.publish([alert_event(1, rule="crit", level=Level.critical)])
    notifier.flush()
    got = sorted(udp.recv(65536).decode() for _ in range(2))
    assert got[0].startswith("<130>1 ") and "crit" in got[0]  # local0 (16*8) + critical (2)
    assert got[1].startswith("<131>1 ") and '"count":50' in got[1]  # high -> err (3)
    only_crit = unix.recv(65536).decode()
    assert '"crit"' in only_crit
    notifier.close()
    udp.close()
    unix.close()


def test_stdout_sink(capsys: pytest.CaptureFixture[str]) -> None:
    notifier = Notifier(GroupingSection(window_s=10), [StdoutSink(StdoutSinkConfig())])
    notifier.publish([alert_event(i) for i in range(3)])
    notifier.close()
    line = capsys.readouterr().out.strip()
    assert json.loads(line)["count"] == 3


def result(alerts: list[Alert], blocked: bool = False, ep: str = "e1") -> ToolResult:
    return ToolResult(
        exit_code=None if blocked else 0,
        blocked=blocked,
        alerts=alerts,
        ctx=TraceContext(run_id="run1", episode_id=ep, tool_call_id=f"tc-{time.monotonic_ns()}"),
        sandbox_id="sb1",
    )


def test_responder_emits_decisions_and_halts(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    policy = Policy.default().with_overrides(response={"circuit_breaker": {"threshold": 2, "window_s": 60}})
    now = [0.0]
    logged: list[tuple[dict[str, float], int | None]] = []
    resp = Responder(
        policy,
        event_sinks=[store.append],
        loggers=[lambda m, s: logged.append((dict(m), s))],
        clock=lambda: now[0],
    )
    crit = Alert(rule_id="mine", title="miner", level=Level.critical, category="mining")
    summary = EpisodeSummary(run_id="run1", episode_id="e1")
    r1 = result([crit], blocked=True)
    v1 = resp.on_result(r1)
    summary.add(r1.alerts, r1.blocked, v1)
    assert not resp.halted and v1.end_episode
    now[0] = 5.0
    v2 = resp.on_result(result([crit], blocked=True, ep="e2"))
    assert v2.halted and "halt" in v2.actions and resp.halted
    refused, v3 = resp.refuse(TraceContext(run_id="run1", episode_id="e3", tool_call_id="tc-x"), "sb9")
    assert refused.blocked and refused.exit_code is None and v3.end_episode
    resp.finish_episode(summary, step=7)
    resp.close()
    store.flush()
    decisions = [
        (e.ctx.episode_id, e.data.action, e.data.reason) for e in store.query(type="policy_decision")
    ]
    store.close()
    assert ("e1", "penalty", "alerts") in decisions and ("e1", "quarantine", "alerts") in decisions
    assert ("e2", "halt", "circuit_breaker") in decisions
    assert ("e3", "block", "circuit_breaker") in decisions
    assert not any(a == "block" and r == "detection" for _, a, r in decisions)  # the sandbox records those
    ((metrics, step),) = logged
    assert (
        step == 7 and metrics["corral/alerts/category/mining"] == 1.0 and metrics["corral/quarantined"] == 1.0
    )


def test_responder_raise_mode_and_tensorboard_logger() -> None:
    sec = ResponseSection.model_validate(
        {"circuit_breaker": {"threshold": 1, "action": "raise", "min_level": "high"}}
    )
    resp = Responder(sec)
    with pytest.raises(CircuitBreakerTripped, match="threshold 1"):
        resp.on_result(result([Alert(rule_id="x", title="x", level=Level.high, category="c")]))
    assert not resp.halted

    class Writer:
        def __init__(self) -> None:
            self.scalars: list[tuple[str, float, int | None]] = []

        def add_scalar(self, tag: str, value: float, global_step: int | None = None) -> None:
            self.scalars.append((tag, value, global_step))

    w = Writer()
    tensorboard_logger(w)(EpisodeSummary(calls=3).metrics(), 11)
    assert ("corral/calls", 3.0, 11) in w.scalars

"""End to end: the public Sandbox with an allowlist policy, through a shared Harness and its egress.

Everything runs in the private host netns of ``egress_support``; outside hosts are namespaces
that the fixtures create.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from egress_support import OutsideHost

from corral import Policy, Sandbox, TraceContext
from corral.events import Event
from corral.harness import Harness

POLICY = """
network:
  mode: allowlist
  allow:
    - pkg.test:80
    - {cidr: 198.18.7.2/32, ports: [80]}  # the test's outside host sits in a reserved range
  hosts:
    pkg.test: [198.18.7.2]
detection:
  enabled: false
"""


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, ev: Event) -> None:
        self.events.append(ev)


@pytest.fixture(scope="module")
def sink() -> Sink:
    return Sink()


@pytest.fixture(scope="module")
def harness(private_host: None, outside: OutsideHost, sink: Sink) -> Iterator[Harness]:
    h = Harness(Policy.from_yaml(POLICY), sinks=[sink])
    yield h
    h.close()


def test_allowed_name_works_and_everything_else_is_denied_with_context(
    harness: Harness, outside: OutsideHost, sink: Sink
) -> None:
    ctx = TraceContext(run_id="r-eg", step=4, episode_id="e-eg", turn=1, tool_call_id="tc-eg-1")
    with harness.sandbox() as sb:
        assert sb.sandbox_ip is not None
        r = sb.run("curl -s -m 5 http://pkg.test/hello", ctx)
        assert r.stdout.startswith("hello from "), r
        seen_before = len(outside.listeners["ssh"].seen)
        ctx2 = ctx.model_copy(update={"tool_call_id": "tc-eg-2"})
        r = sb.run(
            "curl -s -m 5 http://evil.test/x; echo; "
            "timeout 3 bash -c 'echo > /dev/tcp/198.18.7.2/22' && echo CONNECTED; "
            "getent hosts evil.test || echo NXDOMAIN",
            ctx2,
        )
        assert "CONNECTED" not in r.stdout and "NXDOMAIN" in r.stdout, r
        assert len(outside.listeners["ssh"].seen) == seen_before  # the listener saw nothing
    allowed = [
        e
        for e in sink.events
        if e.type == "network_connection" and e.ctx.tool_call_id == "tc-eg-1" and e.data.decision == "allowed"
    ]
    assert allowed and allowed[0].sandbox_id == sb.id and allowed[0].ctx.episode_id == "e-eg"
    denied = [
        e
        for e in sink.events
        if e.ctx.tool_call_id == "tc-eg-2" and getattr(e.data, "decision", "") == "denied"
    ]
    kinds = {(e.type, getattr(e.data, "layer", "dns")) for e in denied}
    assert ("network_connection", "nftables") in kinds  # the direct connect, from NFLOG
    assert ("dns_query", "dns") in kinds  # the unlisted name
    tool_calls = [e for e in sink.events if e.type == "tool_call" and e.ctx.tool_call_id == "tc-eg-1"]
    assert tool_calls[0].data.sandbox_ip == sb.sandbox_ip


def test_default_policy_has_no_network_at_all(private_host: None, outside: OutsideHost) -> None:
    with Sandbox(Policy.default().with_overrides(detection={"enabled": False})) as sb:
        r = sb.run(
            "curl -s -m 3 http://198.18.7.2/ || echo FAILED; cat /proc/net/dev | tail -n +3 | cut -d: -f1"
        )
    assert "FAILED" in r.stdout and "hello" not in r.stdout
    assert [x.strip() for x in r.stdout.splitlines()[1:]] == ["lo"]

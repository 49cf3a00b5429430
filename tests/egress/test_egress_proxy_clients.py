"""Real clients against the real proxy in a real sandbox netns: every refused attempt, of any protocol
or malformed, leaves exactly one denied event; fingerprints on allowed flows are reported at once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from egress_support import OutsideHost, sandbox_run

from corral.egress import Egress, NetworkAttachment
from corral.events import Event, NetworkConnection
from corral.policy import Policy

POLICY = """
network:
  mode: allowlist
  allow: ["pkg.test:80,443", "198.18.7.2:22,3333"]
  hosts: {pkg.test: [198.18.7.2]}
"""


class Sink(list[Event]):
    def __call__(self, ev: Event) -> None:
        self.append(ev)

    def proxy(self) -> list[NetworkConnection]:
        return [
            e.data for e in list(self) if isinstance(e.data, NetworkConnection) and e.data.layer == "proxy"
        ]


@pytest.fixture(scope="module")
def sink() -> Sink:
    return Sink()


@pytest.fixture(scope="module")
def att(private_host: None, outside: OutsideHost, sink: Sink) -> Iterator[NetworkAttachment]:
    with Egress.start(Policy.from_yaml(POLICY), sink, pool_size=0) as eg, eg.attach("sb-clients") as a:
        yield a


def _py(code: str) -> list[str]:
    return ["python3", "-c", code]


def _raw(gw: str, data: bytes, tls_name: str | None = None) -> list[str]:
    if tls_name:
        return _py(
            "import socket,ssl\nc=ssl.create_default_context()\n"
            f"s=socket.create_connection(({gw!r},3128),timeout=3)\n"
            f"try: c.wrap_socket(s,server_hostname={tls_name!r})\n"
            "except Exception as e: print('TLS-FAILED',e)"
        )
    return _py(
        f"import socket\ns=socket.create_connection(({gw!r},3128),timeout=3)\ns.sendall({data!r})\n"
        "s.shutdown(socket.SHUT_WR)\ntry: print(s.recv(200))\nexcept OSError as e: print('ERR',e)"
    )


def _new_events(sink: Sink, before: int, want: int = 1, timeout: float = 5.0) -> list[NetworkConnection]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(sink.proxy()) - before < want:
        time.sleep(0.05)
    time.sleep(0.2)  # anything more would show up by now
    return sink.proxy()[before:]


@pytest.mark.parametrize(
    ("name", "rule", "ip", "host", "port"),
    [
        ("socks4", "socks4:unsupported", "198.18.7.2", None, 80),
        ("socks4a", "socks4a:unsupported", None, "pkg.test", 80),
        ("bare-lf", "bad-request:bare-lf", None, "pkg.test", 443),
        ("tls-hello", "not-a-proxy-request:tls", None, "evil.example.org", None),
        ("garbage", "bad-request:not-a-proxy-request", None, None, None),
        ("gave-up", "incomplete-request", None, None, None),
        ("ip-literal", "always-denied", "203.0.113.7", None, 443),
    ],
)
def test_refused_attempt_leaves_one_denied_event(
    att: NetworkAttachment,
    sink: Sink,
    name: str,
    rule: str,
    ip: str | None,
    host: str | None,
    port: int | None,
) -> None:
    gw = att.gateway
    argv = {
        "socks4": ["curl", "-sS", "--max-time", "3", "--socks4", f"{gw}:3128", "http://198.18.7.2/"],
        "socks4a": ["curl", "-sS", "--max-time", "3", "--socks4a", f"{gw}:3128", "http://pkg.test/"],
        "bare-lf": _raw(gw, b"CONNECT pkg.test:443 HTTP/1.1\nHost: pkg.test\n\n"),
        "tls-hello": _raw(gw, b"", tls_name="evil.example.org"),
        "garbage": _raw(gw, b"\x00\x01\x02 not a request"),
        "gave-up": _raw(gw, b"CONNECT pkg.te"),
        "ip-literal": ["curl", "-sS", "--max-time", "3", "https://203.0.113.7/"],
    }[name]
    before = len(sink.proxy())
    r = sandbox_run(att, argv)
    assert "hello from" not in r.stdout
    (ev,) = _new_events(sink, before)
    assert ev.decision == "denied" and ev.rule is not None and ev.rule.startswith(rule), ev
    assert ev.SourceIp == att.sandbox_ip and ev.SourcePort
    assert (ev.DestinationIp, ev.DestinationHostname, ev.DestinationPort) == (ip, host, port)


def test_ssh_banner_on_an_allowed_port_is_reported_while_the_flow_is_open(
    att: NetworkAttachment, sink: Sink
) -> None:
    before = len(sink.proxy())
    code = (
        f"import socket,time\ns=socket.create_connection(({att.gateway!r},3128),timeout=3)\n"
        "s.sendall(b'CONNECT 198.18.7.2:22 HTTP/1.1\\r\\n\\r\\n')\nprint(s.recv(200))\n"
        "time.sleep(0.3)\nprint(s.recv(200))\ntime.sleep(1.0)\ns.close()"
    )
    r = sandbox_run(att, _py(code))
    assert "SSH-2.0" in r.stdout, r
    events = _new_events(sink, before, want=2)
    assert [(e.decision, e.fingerprint) for e in events] == [("allowed", "ssh"), ("allowed", "ssh")]
    interim, final = events
    assert interim.fingerprint_detail == "server: SSH-2.0-OpenSSH_9.2" and interim.DestinationPort == 22
    assert final.bytes_received >= interim.bytes_received


def test_stratum_login_on_an_allowed_port_is_fingerprinted(att: NetworkAttachment, sink: Sink) -> None:
    before = len(sink.proxy())
    msg = b'{"id": 1, "method": "mining.subscribe", "params": ["cpuminer-opt/3.2"]}\n'
    code = (
        f"import socket\ns=socket.create_connection(({att.gateway!r},3128),timeout=3)\n"
        "s.sendall(b'CONNECT 198.18.7.2:3333 HTTP/1.1\\r\\n\\r\\n')\ns.recv(200)\n"
        f"s.sendall({msg!r})\ns.recv(200)\ns.close()"
    )
    sandbox_run(att, _py(code))
    events = _new_events(sink, before, want=2)
    found = {e.fingerprint for e in events}
    assert "stratum" in found, events
    assert any(e.fingerprint_detail == "client: mining.subscribe" for e in events)


def test_plain_allowed_fetch_has_no_fingerprint(att: NetworkAttachment, sink: Sink) -> None:
    before = len(sink.proxy())
    r = sandbox_run(att, ["curl", "-sS", "--max-time", "3", "http://pkg.test/simple/"])
    assert r.returncode == 0, r.stderr
    (ev,) = _new_events(sink, before)
    assert ev.decision == "allowed" and ev.fingerprint is None

"""The proxy's decision and accounting as scripts of events and expected commands (no sockets)."""

from __future__ import annotations

import ssl

import pytest

from corral.egress._flow import (
    Account,
    ClientClosed,
    ClientData,
    CloseAll,
    Command,
    Connected,
    ConnectFailed,
    Dial,
    Flow,
    Record,
    RequestTimeout,
    Resolve,
    Resolved,
    SendClient,
    SendServer,
    ServerClosed,
    ServerData,
)
from corral.egress._rules import Rules
from corral.policy import Policy

POLICY = Policy.from_yaml(
    """
network:
  mode: allowlist
  allow: ["pkg.test:80,443", "198.18.7.2:80", "other.test:443"]
  deny: [bad.pkg.test]
"""
).network
OUT = Connected("198.18.7.1", 40000, "198.18.7.2", 443)


def flow(connections_max: int = 10, transfer_max_bytes: int = 10_000) -> Flow:
    return Flow(Rules(POLICY), Account(connections_max, transfer_max_bytes))


def records(cmds: list[Command]) -> list[Record]:
    return [c for c in cmds if isinstance(c, Record)]


def client_hello(sni: str | None) -> bytes:
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = (
        ctx.wrap_bio(inc, out, server_hostname=sni)
        if sni
        else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).wrap_bio(inc, out)
    )
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_connect_allowed_then_relay_and_one_record_at_end() -> None:
    f = flow()
    assert f.handle(ClientData(b"CONNECT pkg.test:443 HTTP/1.1\r\nHost: pkg.test\r\n\r\n")) == [
        Resolve("pkg.test")
    ]
    assert f.handle(Resolved(("198.18.7.2",))) == [Dial("198.18.7.2", 443)]
    assert f.handle(OUT) == [SendClient(b"HTTP/1.1 200 Connection established\r\n\r\n")]
    hello = client_hello("pkg.test")
    assert f.handle(ClientData(hello)) == [SendServer(hello)]
    assert f.handle(ServerData(b"x" * 10)) == [SendClient(b"x" * 10)]
    end = f.handle(ServerClosed())
    (rec,) = records(end)
    assert (rec.decision, rec.rule, rec.proxy_protocol) == (
        "allowed",
        "allow:pkg.test:80,443",
        "http-connect",
    )
    assert (rec.bytes_sent, rec.bytes_received, rec.outside) == (len(hello), 10, OUT)
    assert end[-1] == CloseAll() and f.handle(ClientClosed()) == []


@pytest.mark.parametrize(
    ("request_head", "rule", "status"),
    [
        (b"CONNECT evil.example.org:443 HTTP/1.1\r\n\r\n", "default-deny", b"403"),
        (b"CONNECT bad.pkg.test:443 HTTP/1.1\r\n\r\n", "deny:bad.pkg.test", b"403"),
        (b"CONNECT pkg.test:22 HTTP/1.1\r\n\r\n", "default-deny", b"403"),
        (b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n", "always-denied:metadata", b"403"),
        (b"GET http://metadata.google.internal/ HTTP/1.1\r\n\r\n", "always-denied:name", b"403"),
        (b"GET /relative HTTP/1.1\r\nHost: pkg.test\r\n\r\n", "bad-request", b"400"),
        (b"GET ftp://pkg.test/ HTTP/1.1\r\n\r\n", "bad-request", b"400"),
        (b"NOT HTTP AT ALL\r\n\r\n", "bad-request", b"400"),
    ],
)
def test_denied_requests_get_clear_error_and_exactly_one_record(
    request_head: bytes, rule: str, status: bytes
) -> None:
    f = flow()
    cmds = f.handle(ClientData(request_head))
    assert isinstance(cmds[0], SendClient) and cmds[0].data.startswith(b"HTTP/1.1 " + status)
    assert b"denied by policy" in cmds[0].data and b"X-Corral-Decision: denied" in cmds[0].data
    (rec,) = records(cmds)
    assert rec.decision == "denied" and rec.rule.startswith(rule)
    assert cmds[-1] == CloseAll()
    assert f.handle(ClientClosed()) == [] and f.account.connections == 0


def test_header_split_across_reads() -> None:
    f = flow()
    assert f.handle(ClientData(b"CONNECT pkg.te")) == []
    assert f.handle(ClientData(b"st:443 HTTP/1.1\r\n\r\n")) == [Resolve("pkg.test")]


@pytest.mark.parametrize(
    ("answers", "rule"),
    [
        (("10.0.0.5",), "rebinding:always-denied:private"),
        (("198.18.7.2", "127.0.0.1"), "rebinding:always-denied:loopback"),  # any bad answer refuses
        ((), "resolve-failed:no-address"),
    ],
)
def test_dns_rebinding_is_refused_before_dialing(answers: tuple[str, ...], rule: str) -> None:
    f = flow()
    f.handle(ClientData(b"CONNECT pkg.test:443 HTTP/1.1\r\n\r\n"))
    cmds = f.handle(Resolved(answers))
    assert not any(isinstance(c, Dial) for c in cmds)
    assert records(cmds)[0].rule.startswith(rule)


@pytest.mark.parametrize(
    ("sni", "ok"), [("pkg.test", True), ("PKG.TEST", True), ("other.test", False), (None, True)]
)
def test_sni_must_match_connect_host(sni: str | None, ok: bool) -> None:
    f = flow()
    f.handle(ClientData(b"CONNECT pkg.test:443 HTTP/1.1\r\n\r\n"))
    f.handle(Resolved(("198.18.7.2",)))
    f.handle(OUT)
    hello = client_hello(sni)
    assert f.handle(ClientData(hello[:20])) == []  # the ClientHello is held until complete
    cmds = f.handle(ClientData(hello[20:]))
    if ok:
        assert cmds == [SendServer(hello)]
    else:
        assert not any(isinstance(c, SendServer) for c in cmds)
        (rec,) = records(cmds)
        assert (rec.decision, rec.rule) == ("denied", f"sni-mismatch:{sni}")


def test_plain_http_is_rewritten_to_origin_form() -> None:
    f = flow()
    head = (
        b"GET http://198.18.7.2/simple/?q=1 HTTP/1.1\r\n"
        b"Host: 198.18.7.2\r\nProxy-Connection: keep-alive\r\n\r\n"
    )
    assert f.handle(ClientData(head)) == [Dial("198.18.7.2", 80)]
    (cmd,) = f.handle(Connected("198.18.7.1", 5, "198.18.7.2", 80))
    assert cmd == SendServer(b"GET /simple/?q=1 HTTP/1.1\r\nHost: 198.18.7.2\r\nConnection: close\r\n\r\n")


def test_socks5_connect_by_name() -> None:
    f = flow()
    assert f.handle(ClientData(b"\x05\x01\x00")) == [SendClient(b"\x05\x00")]
    req = b"\x05\x01\x00\x03" + bytes([8]) + b"pkg.test" + (80).to_bytes(2, "big")
    assert f.handle(ClientData(req)) == [Resolve("pkg.test")]
    f.handle(Resolved(("198.18.7.2",)))
    assert f.handle(Connected("198.18.7.1", 5, "198.18.7.2", 80)) == [
        SendClient(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
    ]
    assert f.handle(ClientData(b"GET / HTTP/1.0\r\n\r\n")) == [SendServer(b"GET / HTTP/1.0\r\n\r\n")]
    assert records(f.handle(ClientClosed()))[0].proxy_protocol == "socks5"


@pytest.mark.parametrize(
    ("script", "reply", "rule"),
    [
        ([b"\x05\x01\x02"], b"\x05\xff", "socks:no-acceptable-auth"),
        ([b"\x05\x01\x00", b"\x05\x03\x00\x01\xc6\x12\x07\x02\x00\x50"], b"\x05\x07", "socks:command-3"),
        (
            [b"\x05\x01\x00", b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x16"],
            b"\x05\x02",
            "always-denied:private",
        ),
    ],
)
def test_socks5_refusals(script: list[bytes], reply: bytes, rule: str) -> None:
    f = flow()
    cmds: list[Command] = []
    for chunk in script:
        cmds += f.handle(ClientData(chunk))
    sends = [c.data for c in cmds if isinstance(c, SendClient)]
    assert sends[-1].startswith(reply)
    assert records(cmds)[0].rule.startswith(rule)


def test_connection_budget() -> None:
    account = Account(connections_max=1, transfer_max_bytes=10_000)
    rules = Rules(POLICY)
    first, second = Flow(rules, account), Flow(rules, account)
    assert first.handle(ClientData(b"CONNECT 198.18.7.2:80 HTTP/1.1\r\n\r\n")) == [Dial("198.18.7.2", 80)]
    cmds = second.handle(ClientData(b"CONNECT 198.18.7.2:80 HTTP/1.1\r\n\r\n"))
    assert records(cmds)[0].rule == "budget:connections"


def test_byte_budget_closes_the_flow() -> None:
    f = flow(transfer_max_bytes=100)
    f.handle(ClientData(b"CONNECT 198.18.7.2:80 HTTP/1.1\r\n\r\n"))
    f.handle(Connected("198.18.7.1", 5, "198.18.7.2", 80))
    assert f.handle(ClientData(b"a" * 60)) == [SendServer(b"a" * 60)]
    cmds = f.handle(ServerData(b"b" * 60))
    assert not any(isinstance(c, SendClient) for c in cmds)
    assert records(cmds)[0].rule.endswith(";budget:transfer-bytes")


def test_failed_dial_answers_502() -> None:
    f = flow()
    f.handle(ClientData(b"CONNECT 198.18.7.2:80 HTTP/1.1\r\n\r\n"))
    cmds = f.handle(ConnectFailed("ConnectionRefusedError"))
    assert isinstance(cmds[0], SendClient) and cmds[0].data.startswith(b"HTTP/1.1 502")
    assert records(cmds)[0].rule.endswith("connect-failed:ConnectionRefusedError")


def test_server_first_protocol_needs_no_client_bytes() -> None:
    f = flow()
    f.handle(ClientData(b"CONNECT 198.18.7.2:80 HTTP/1.1\r\n\r\n"))
    f.handle(Connected("198.18.7.1", 5, "198.18.7.2", 80))
    first = f.handle(ServerData(b"SSH-2.0-x\r\n"))
    assert first[0] == SendClient(b"SSH-2.0-x\r\n")
    (rec,) = records(first)  # the banner is a fingerprint: reported at once, while the flow runs
    assert (rec.interim, rec.decision, rec.fingerprint, rec.fingerprint_detail) == (
        True,
        "allowed",
        "ssh",
        "server: SSH-2.0-x",
    )
    assert f.handle(ClientData(b"SSH-2.0-y\r\n")) == [SendServer(b"SSH-2.0-y\r\n")]  # once per flow


# -- every refused attempt leaves exactly one denied record --------------------------------------------
def _script(*events: object) -> list[Command]:
    f = flow()
    out: list[Command] = []
    for ev in events:
        out += f.handle(ev)  # type: ignore[arg-type]
    out += f.handle(ClientClosed())
    return out


@pytest.mark.parametrize(
    ("data", "protocol", "host", "ip", "port", "rule"),
    [
        (
            b"\x04\x01\x01\xbb\xc6\x12\x07\x02user\x00",
            "socks4",
            "198.18.7.2",
            "198.18.7.2",
            443,
            "socks4:unsupported",
        ),
        (
            b"\x04\x01\x00\x50\x00\x00\x00\x01\x00pkg.test\x00",
            "socks4a",
            "pkg.test",
            None,
            80,
            "socks4a:unsupported",
        ),
        (
            b"CONNECT pkg.test:443 HTTP/1.1\nHost: pkg.test\n\n",
            "http-connect",
            "pkg.test",
            None,
            443,
            "bad-request:bare-lf",
        ),
        (
            b"CONNECT 198.18.7.9:22 HTTP/1.1\n",
            "http-connect",
            "198.18.7.9",
            "198.18.7.9",
            22,
            "bad-request:bare-lf",
        ),
        (client_hello("evil.example.org"), "tls", "evil.example.org", None, None, "not-a-proxy-request:tls"),
        (b"\x00\x01garbage\xff", "http", None, None, None, "bad-request:not-a-proxy-request"),
        (b"get / HTTP/1.1\r\n\r\n", "http", None, None, None, "bad-request:not-a-proxy-request"),
        (
            b"CONNECT 203.0.113.9:443 HTTP/1.1\r\n\r\n",
            "http-connect",
            "203.0.113.9",
            "203.0.113.9",
            443,
            "always-denied",
        ),
        (
            b"\x05\x01\x00\x05\x01\x00\x01\xcb\x00\x71\x09\x00\x16",
            "socks5",
            "203.0.113.9",
            "203.0.113.9",
            22,
            "always-denied",
        ),
        (b"CONNECT pkg.te", "http", None, None, None, "incomplete-request"),  # the client gave up
        (b"", "unknown", None, None, None, "no-request"),
    ],
)
def test_refused_attempts_leave_one_denied_record(
    data: bytes, protocol: str, host: str | None, ip: str | None, port: int | None, rule: str
) -> None:
    out = _script(ClientData(data)) if data else _script()
    (rec,) = records(out)
    assert (rec.decision, rec.proxy_protocol, rec.host, rec.ip, rec.port) == (
        "denied",
        protocol,
        host,
        ip,
        port,
    )
    assert rec.rule.startswith(rule), rec.rule
    assert out[-1] == CloseAll()


def test_socks4_gets_a_rejection_and_nothing_is_dialled() -> None:
    out = _script(ClientData(b"\x04\x01\x01\xbb\xc6\x12\x07\x02\x00"))
    assert SendClient(b"\x00\x5b\x00\x00\x00\x00\x00\x00") in out
    assert not [c for c in out if isinstance(c, Dial | Resolve)]


def test_request_timeout_is_a_denial_once() -> None:
    f = flow()
    f.handle(ClientData(b"CONNECT pkg.test:443 HTT"))
    (rec,) = records(f.handle(RequestTimeout()))
    assert (rec.decision, rec.rule) == ("denied", "timeout:no-complete-request")
    assert f.handle(ClientClosed()) == [] and f.handle(RequestTimeout()) == []


def test_timeout_after_the_request_changes_nothing() -> None:
    f = flow()
    f.handle(ClientData(b"CONNECT 198.18.7.2:80 HTTP/1.1\r\n\r\n"))
    assert f.handle(RequestTimeout()) == []


# -- fingerprints on allowed flows ----------------------------------------------------------------------
def _open(target: bytes = b"198.18.7.2:80") -> Flow:
    f = flow(transfer_max_bytes=1_000_000)
    f.handle(ClientData(b"CONNECT " + target + b" HTTP/1.1\r\n\r\n"))
    f.handle(Connected("198.18.7.1", 5, "198.18.7.2", 80))
    return f


@pytest.mark.parametrize(
    ("client", "server", "name", "detail"),
    [
        ([b"SSH-2.0-OpenSSH_9.6\r\n"], [], "ssh", "client: SSH-2.0-OpenSSH_9.6"),
        ([], [b"SSH-2.0-dropbear\r\n"], "ssh", "server: SSH-2.0-dropbear"),
        (
            [b'{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5"]}\n'],
            [],
            "stratum",
            "client: mining.subscribe",
        ),
        (
            [
                b'{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"4A..","pass":"x","agent":"XMRig"}}\n'
            ],
            [],
            "stratum",
            "client: login",
        ),
        (
            [b'{"id": 2, "method": "mining.auth', b'orize", "params": ["w", "x"]}\n'],
            [],
            "stratum",
            "client: mining.authorize",
        ),
        (
            [b"\x00" + client_hello("tunnel.example.net")],
            [],
            "tls-tunnel",
            "client: sni=tunnel.example.net offset=1",
        ),
    ],
)
def test_fingerprints_are_reported_while_the_flow_runs(
    client: list[bytes], server: list[bytes], name: str, detail: str
) -> None:
    f = _open()
    out: list[Command] = []
    for c in client:
        out += f.handle(ClientData(c))
    for s in server:
        out += f.handle(ServerData(s))
    (early,) = records(out)
    assert (early.interim, early.decision, early.fingerprint, early.fingerprint_detail) == (
        True,
        "allowed",
        name,
        detail,
    )
    (final,) = records(f.handle(ClientClosed()))
    assert (final.interim, final.fingerprint) == (False, name)


@pytest.mark.parametrize(
    ("client", "server"),
    [
        (
            [b"GET /simple/ HTTP/1.1\r\nHost: pkg.test\r\n\r\n"],
            [b"HTTP/1.1 200 OK\r\n\r\n<html>login</html>"],
        ),
        ([b'{"method": "login", "user": "me"}\n'], []),  # a JSON API with a login call is not stratum
        ([b"git-upload-pack /repo.git\x00"], [b"0000"]),
    ],
)
def test_benign_traffic_has_no_fingerprint(client: list[bytes], server: list[bytes]) -> None:
    f = _open()
    out: list[Command] = []
    for c in client:
        out += f.handle(ClientData(c))
    for s in server:
        out += f.handle(ServerData(s))
    out += f.handle(ClientClosed())
    (rec,) = records(out)
    assert rec.fingerprint is None and not rec.interim


def test_tls_with_the_allowed_name_is_not_a_tunnel() -> None:
    f = flow(transfer_max_bytes=1_000_000)
    f.handle(ClientData(b"CONNECT pkg.test:443 HTTP/1.1\r\n\r\n"))
    f.handle(Resolved(("198.18.7.2",)))
    f.handle(OUT)
    out = f.handle(ClientData(client_hello("pkg.test")))
    assert not records(out)

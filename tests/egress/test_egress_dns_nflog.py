"""The resolver's answers and the NFLOG decoder, without sockets."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from dnslib import RCODE, DNSRecord

from corral.egress._dns import answer
from corral.egress._nflog import parse_messages
from corral.egress._rules import Rules
from corral.egress._tls import client_hello_sni
from corral.policy import Policy

RULES = Rules(
    Policy.from_yaml(
        """
network:
  mode: allowlist
  allow: ["pkg.test:80", "*.mirror.test", "198.18.7.2:80", "198.18.7.3:80", "[2001:db8::7]:80"]
  hosts: {pkg.test: [198.18.7.2], a.mirror.test: [10.1.1.1], b.mirror.test: [198.18.7.3, "2001:db8::7"]}
"""
    ).network
)


async def _never(name: str) -> tuple[str, ...]:
    raise AssertionError(f"upstream resolution attempted for {name}")


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "answers", "decision", "rule"),
    [
        ("pkg.test", "A", RCODE.NOERROR, ["198.18.7.2"], "allowed", "allow:pkg.test:80"),
        ("PKG.test.", "A", RCODE.NOERROR, ["198.18.7.2"], "allowed", "allow:pkg.test:80"),
        ("pkg.test", "AAAA", RCODE.NOERROR, [], "allowed", "allow:pkg.test:80"),
        ("pkg.test", "TXT", RCODE.NOERROR, [], "allowed", "allow:pkg.test:80"),
        ("b.mirror.test", "AAAA", RCODE.NOERROR, ["2001:db8::7"], "allowed", "allow:*.mirror.test"),
        ("a.mirror.test", "A", RCODE.NXDOMAIN, [], "denied", "rebinding:always-denied:private"),
        ("unlisted.example.org", "A", RCODE.NXDOMAIN, [], "denied", "default-deny"),
        ("aGVsbG8.t.example.org", "TXT", RCODE.NXDOMAIN, [], "denied", "default-deny"),
        ("metadata.google.internal", "A", RCODE.NXDOMAIN, [], "denied", "always-denied:name"),
    ],
)
def test_answers(name: str, qtype: str, rcode: int, answers: list[str], decision: str, rule: str) -> None:
    q = DNSRecord.question(name, qtype).pack()
    reply, out = asyncio.run(answer(RULES, q, "10.231.0.2", _never, over_budget=False))
    assert reply is not None and out is not None
    r = DNSRecord.parse(reply)
    assert r.header.rcode == rcode
    assert [str(rr.rdata) for rr in r.rr] == answers
    assert (out.decision, out.rule.startswith(rule), out.name) == (decision, True, name.lower().rstrip("."))


def test_budget_refuses_and_garbage_is_ignored() -> None:
    q = DNSRecord.question("pkg.test").pack()
    reply, out = asyncio.run(answer(RULES, q, "10.231.0.2", _never, over_budget=True))
    assert reply is not None and DNSRecord.parse(reply).header.rcode == RCODE.REFUSED
    assert out is not None and out.rule == "budget:dns-queries"
    assert asyncio.run(answer(RULES, b"\x00garbage", "10.231.0.2", _never, over_budget=False)) == (None, None)


def _nflog_msg(payload: bytes, prefix: bytes = b"corral-deny ", uid: int | None = 65534) -> bytes:
    def attr(t: int, v: bytes) -> bytes:
        a = struct.pack("=HH", 4 + len(v), t) + v
        return a + b"\0" * (-len(a) % 4)

    body = (
        struct.pack("=BBH", socket.AF_INET, 0, socket.htons(7)) + attr(9, payload) + attr(10, prefix + b"\0")
    )
    if uid is not None:
        body += attr(11, struct.pack("!I", uid))
    return struct.pack("=IHHII", 16 + len(body), 4 << 8, 0, 0, 0) + body


def _ipv4(proto: int, l4: bytes) -> bytes:
    src, dst = socket.inet_aton("10.231.0.2"), socket.inet_aton("198.18.7.2")
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0, src, dst) + l4


def test_nflog_decodes_tcp_udp_icmp() -> None:
    buf = (
        _nflog_msg(_ipv4(6, struct.pack("!HH", 40001, 22) + b"\0" * 16))
        + _nflog_msg(_ipv4(17, struct.pack("!HHHH", 40002, 5353, 9, 0) + b"x"), uid=None)
        + _nflog_msg(_ipv4(1, struct.pack("!BBHHH", 8, 0, 0, 77, 1)))
    )
    pkts = parse_messages(buf)
    assert [(p.protocol, p.src, p.dst, p.src_port, p.dst_port, p.icmp_id, p.uid) for p in pkts] == [
        ("tcp", "10.231.0.2", "198.18.7.2", 40001, 22, None, 65534),
        ("udp", "10.231.0.2", "198.18.7.2", 40002, 5353, None, None),
        ("icmp", "10.231.0.2", "198.18.7.2", None, None, 77, 65534),
    ]
    assert pkts[0].prefix == "corral-deny"
    assert parse_messages(b"\x01\x02") == []


@pytest.mark.parametrize("record", [b"", b"\x16\x03\x01\x00\x05\x01\x00", b"\x17\x03\x03\x00\x00"])
def test_sni_parser_survives_garbage(record: bytes) -> None:
    assert client_hello_sni(record) is None

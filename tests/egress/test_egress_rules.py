"""The allow/deny decision as a table of cases (pure, no sockets)."""

from __future__ import annotations

import pytest

from corral.egress import Rules
from corral.egress._rules import parse_ip
from corral.errors import PolicyError
from corral.policy import Policy

POLICY = """
network:
  mode: allowlist
  allow:
    - pypi.org
    - "*.pythonhosted.org:443,80"
    - {domain: git.example.net, ports: [22, 443]}
    - 198.18.7.2:80
    - {cidr: 10.20.0.0/16, ports: [5432]}
    - {cidr: "169.254.169.254/32", ports: [8080]}
    - {cidr: "169.254.0.0/16", ports: [9090]}
    - "[2001:db8:1::5]:443"
    - {cidr: 93.184.0.0/16, ports: [80, 443]}
  deny:
    - evil.pythonhosted.org
    - {cidr: 10.20.30.0/24}
    - 93.184.216.35
    - {cidr: 93.184.7.0/24, ports: [443]}
"""

RULES = Rules(Policy.from_yaml(POLICY).network, host_addresses=["203.0.113.9", "fd00::2"])


@pytest.mark.parametrize(
    ("dest", "port", "allowed", "rule"),
    [
        ("pypi.org", 443, True, "allow:pypi.org"),
        ("PyPI.org.", 443, True, "allow:pypi.org"),
        ("pypi.org", 80, False, "default-deny"),  # default port is 443 only
        ("sub.pypi.org", 443, False, "default-deny"),  # exact entries do not cover subdomains
        ("files.pythonhosted.org", 80, True, "allow:*.pythonhosted.org"),
        ("pythonhosted.org", 443, False, "default-deny"),  # *.x covers strict subdomains only
        ("evil.pythonhosted.org", 443, False, "deny:evil.pythonhosted.org"),  # deny wins
        ("git.example.net", 22, True, "allow:git.example.net"),
        ("metadata.google.internal", 80, False, "always-denied:name"),
        ("localhost", 443, False, "always-denied:name"),
        ("foo.localhost", 443, False, "always-denied:name"),
        ("198.18.7.2", 80, True, "allow-exception:198.18.7.2/32"),  # reserved, but named exactly
        ("198.18.7.2", 443, False, "default-deny"),
        ("198.18.7.3", 80, False, "always-denied:reserved"),
        ("10.20.1.1", 5432, False, "always-denied:private"),  # a CIDR never opens a private range
        ("169.254.169.254", 9090, False, "default-deny"),  # the wide link-local entry opens nothing
        ("10.20.30.4", 5432, False, "deny:10.20.30.0/24"),
        ("10.1.1.1", 443, False, "always-denied:private"),
        ("192.168.1.1", 443, False, "always-denied:private"),
        ("172.16.0.1", 443, False, "always-denied:private"),
        ("127.0.0.1", 443, False, "always-denied:loopback"),
        ("::1", 443, False, "always-denied:loopback"),
        ("169.254.169.254", 80, False, "default-deny"),  # listed for 8080 only, so not refused outright
        ("169.254.169.254", 8080, True, "allow-exception:169.254.169.254/32"),
        ("169.254.10.10", 9090, False, "always-denied:link-local"),
        ("169.254.10.10", 80, False, "always-denied:link-local"),
        ("100.100.100.200", 80, False, "always-denied:metadata"),
        ("fd00:ec2::254", 80, False, "always-denied:metadata"),
        ("::ffff:127.0.0.1", 443, False, "always-denied:loopback"),  # v4-mapped unwrapped
        ("64:ff9b::a00:1", 443, False, "always-denied:private"),  # NAT64 of 10.0.0.1
        ("203.0.113.9", 443, False, "always-denied:host-address"),
        ("8.8.8.8", 53, False, "default-deny"),
        ("2001:db8:1::5", 443, True, "allow-exception:2001:db8:1::5/128"),
        ("2001:db8:1::6", 443, False, "always-denied:documentation"),
        ("93.184.216.34", 443, True, "allow:93.184.0.0/16"),
        ("93.184.216.35", 443, False, "deny:93.184.216.35"),  # a deny inside an allow wins
        ("93.184.7.1", 443, False, "deny:93.184.7.0/24:443"),  # ... on the ports it names
        ("93.184.7.1", 80, True, "allow:93.184.0.0/16"),
        ("a.b.c.pythonhosted.org", 443, True, "allow:*.pythonhosted.org"),  # any depth
        ("224.0.0.1", 443, False, "always-denied:multicast"),
    ],
)
def test_decide_name(dest: str, port: int, allowed: bool, rule: str) -> None:
    v = RULES.decide_name(dest, port)
    assert (v.allowed, v.rule.startswith(rule)) == (allowed, True), v


@pytest.mark.parametrize(
    ("ip", "refused_rule"),
    [
        ("10.9.9.9", "rebinding:always-denied:private"),
        ("127.0.0.1", "rebinding:always-denied:loopback"),
        ("169.254.169.254", None),  # listed by IP (any port) in this policy
        ("10.20.30.1", "rebinding:deny:10.20.30.0/24"),
        ("93.184.216.34", None),
    ],
)
def test_rebinding_check(ip: str, refused_rule: str | None) -> None:
    addr = parse_ip(ip)
    assert addr is not None
    v = RULES.check_resolved(addr, 443)
    assert (
        v.rule.rsplit(":", 1)[0] if v and v.rule.count(":") > 2 else v.rule if v else None
    ) == refused_rule


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("pypi.org", True),
        ("files.pythonhosted.org", True),
        ("x.tunnel.example.org", False),
        ("metadata", False),
    ],
)
def test_dns_answers_only_listed_names(name: str, allowed: bool) -> None:
    assert RULES.decide_dns(name).allowed is allowed


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('"*"', "too broad"),
        ('"*.com"', "too broad"),
        ('"*.co.uk"', "too broad"),
        ('"*.github.io"', "too broad"),
        ('"foo*.example.com"', "only allowed as a leading"),
        ("0.0.0.0/0", "too broad"),
        ("10.0.0.0/8", "too broad"),
        ('"::/0"', "too broad"),
        ("{domain: a.example.com, cidr: 10.1.0.0/16}", "exactly one"),
        ("{domain: a.example.com, ports: [0]}", "out of range"),
        ("{domain: a.example.com, ports: []}", "must not be empty"),
        ('"bad_host!.com"', "not a valid domain"),
        (f'"{"a" * 64}.example.com"', "not a valid domain"),  # a label is at most 63 characters
        (f'"{".".join(["a" * 60] * 5)}.com"', "at most 253 characters"),
    ],
)
def test_broad_or_bad_entries_are_refused(entry: str, message: str) -> None:
    with pytest.raises(PolicyError) as exc:
        Policy.from_yaml(f"network:\n  mode: allowlist\n  allow:\n    - {entry}\n", "p.yaml")
    text = str(exc.value)
    assert message in text and "p.yaml:4: network.allow[0]" in text, text


def test_shorthand_forms() -> None:
    net = Policy.from_yaml(
        'network:\n  allow: ["a.example.com", "b.example.com:80,8080", "198.18.1.1", "[2001:db8::1]:22"]\n'
    ).network
    assert [(e.domain or e.cidr, e.ports) for e in net.allow] == [
        ("a.example.com", None),
        ("b.example.com", (80, 8080)),
        ("198.18.1.1/32", None),
        ("2001:db8::1/128", (22,)),
    ]


def test_default_policy_has_no_network() -> None:
    net = Policy.default().network
    assert net.mode == "none" and net.allow == () and net.hosts == {}

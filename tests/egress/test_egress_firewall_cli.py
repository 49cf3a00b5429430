"""``corral firewall export|apply``: every form checked by its own tool, with one meaning everywhere;
the nftables form installed for real (in a private netns this test creates, so the machine's own
firewall is never touched)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import Result
from export_support import (
    cilium_allows_ip,
    cilium_allows_name,
    networkpolicy_allows,
    nft_check,
    nft_forward_allows,
    nft_sets,
    validate_cilium,
    validate_k8s,
)
from typer.testing import CliRunner

from corral.cli import app
from corral.egress._export import ExportOptions, export, render
from corral.egress._nsutil import in_netns
from corral.errors import EgressError, RegistryError
from corral.policy import Policy

POLICY = """
network:
  mode: allowlist
  allow:
    - pypi.org
    - "*.pythonhosted.org:443,80"
    - "198.18.7.2:80"
    - {cidr: 10.20.0.0/16, ports: [5432]}
    - "93.184.0.0/16:443"
    - "93.184.0.0/17:443"          # overlaps the /16 on the same port: merged
    - "93.184.216.0/24:80,443"
    - "169.254.0.0/16:80"          # covers the metadata endpoint: opens nothing
  deny:
    - files.example.org
    - 10.20.30.0/24
    - 93.184.216.0/25
    - 93.184.216.34
    - {cidr: 93.184.7.0/24, ports: [443]}
response:
  sinks:
    - {type: webhook, url: "https://198.51.100.20:8443/hook"}
    - {type: webhook, url: "https://alerts.example.org/hook"}
    - {type: syslog, address: "198.51.100.21:514"}
"""
EXAMPLES = sorted(Path(__file__).parents[2].joinpath("policies").glob("*.yaml"))


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return p


def corral(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_policy_exports_valid_forms(path: Path) -> None:
    pol = Policy.load(path)
    nft_check(render(pol, "nftables"))
    validate_k8s(render(pol, "k8s-networkpolicy"))
    validate_cilium(yaml.safe_load(render(pol, "cilium")))


def test_mixed_policy_is_valid_for_every_tool_and_means_the_same() -> None:
    pol = Policy.from_yaml(POLICY)
    nft = render(pol, "nftables")
    nft_check(nft)
    sets = nft_sets(nft)
    (np,) = validate_k8s(render(pol, "k8s-networkpolicy"))
    cil = yaml.safe_load(render(pol, "cilium"))
    validate_cilium(cil)
    cases = [
        ("93.184.1.1", 443, True),
        ("93.184.216.200", 80, True),
        ("93.184.216.10", 443, False),  # a deny inside the allow wins (split around it)
        ("93.184.216.34", 443, False),
        ("93.184.7.9", 443, False),  # a deny on this port
        ("93.184.7.9", 80, False),  # never allowed on 80 (only 93.184.216.0/24 is)
        ("169.254.169.254", 80, False),  # the /16 does not open metadata
        ("10.20.1.1", 5432, False),  # nor a private range
        ("198.18.7.2", 80, True),  # named exactly: the loud exception
        ("198.18.7.3", 80, False),
    ]
    for ip, port, want in cases:
        got = (
            nft_forward_allows(sets, ip, port),
            networkpolicy_allows(np, ip, port),
            cilium_allows_ip(cil, ip, port),
        )
        assert got == (want, want, want), (ip, port, got)
    assert cilium_allows_name(cil, "a.b.files.pythonhosted.org", 80)  # '**.': every depth, as the proxy
    assert not cilium_allows_name(cil, "pythonhosted.org", 443)


def test_alert_sinks_are_exported() -> None:
    pol = Policy.from_yaml(POLICY)
    (np,) = validate_k8s(render(pol, "k8s-networkpolicy"))
    assert networkpolicy_allows(np, "198.51.100.20", 8443)
    rules = [r for r in np["spec"]["egress"] if r["ports"] == [{"protocol": "UDP", "port": 514}]]
    assert rules and rules[0]["to"] == [{"ipBlock": {"cidr": "198.51.100.21/32"}}]
    cil = yaml.safe_load(render(pol, "cilium"))
    assert cilium_allows_name(cil, "alerts.example.org", 443)
    out = export(pol, "k8s-networkpolicy")
    assert any("alerts.example.org" in w and "cannot allow a name" in w for w in out.warnings)
    assert "alert sink webhook 198.51.100.20:8443/tcp" in render(pol, "nftables")


def test_networkpolicy_names_need_resolve_and_say_so() -> None:
    pol = Policy.from_yaml(
        "network:\n  mode: allowlist\n  allow: [pkg.example.org, rebind.example.org, '*.cdn.example.org']\n"
        "  hosts: {pkg.example.org: [93.184.5.6], rebind.example.org: [93.184.5.7, 10.0.0.1]}\n"
    )
    plain = export(pol, "k8s-networkpolicy")
    assert any("cannot express names" in w and "--resolve" in w and "Cilium" in w for w in plain.warnings)
    (np,) = validate_k8s(plain.text)
    assert np["metadata"]["annotations"]["corral.dev/names-resolved-at-export"] == "false"
    assert not networkpolicy_allows(np, "93.184.5.6", 443)
    resolved = export(pol, "k8s-networkpolicy", ExportOptions(resolve=True, resolver=_no_dns))
    (np,) = validate_k8s(resolved.text)
    assert networkpolicy_allows(np, "93.184.5.6", 443)
    assert not networkpolicy_allows(np, "93.184.5.7", 443)  # one answer rebinds: the proxy refuses the name
    text = " ".join(resolved.warnings)
    assert "go stale" in text and "rebind.example.org:443: resolves into denied" in text
    assert "*.cdn.example.org: a wildcard cannot be resolved" in text


def _no_dns(name: str) -> tuple[str, ...]:
    raise OSError(f"test resolver: {name} is not in the policy's hosts")


def test_cilium_refuses_what_it_cannot_express() -> None:
    wild = Policy.from_yaml("network:\n  mode: allowlist\n  allow: ['*.example.org']\n")
    with pytest.raises(EgressError, match=r"one label only .*1\.19"):
        export(wild, "cilium", ExportOptions(cilium_version=(1, 18)))
    validate_cilium(yaml.safe_load(render(wild, "cilium")))
    inner = Policy.from_yaml(
        "network:\n  mode: allowlist\n  allow: ['*.example.org']\n  deny: [a.example.org]\n"
    )
    with pytest.raises(EgressError, match="cannot subtract a name"):
        export(inner, "cilium")
    equal = Policy.from_yaml(
        "network:\n  mode: allowlist\n  allow: [a.example.org, b.example.org]\n  deny: [a.example.org]\n"
    )
    cil = yaml.safe_load(render(equal, "cilium"))
    assert cilium_allows_name(cil, "b.example.org", 443) and not cilium_allows_name(cil, "a.example.org", 443)


def test_mode_none_renders_deny_all() -> None:
    net = Policy.default().network
    assert yaml.safe_load(render(net, "k8s-networkpolicy"))["spec"]["egress"] == []
    nft = render(net, "nftables")
    assert "allow_v4 { type ipv4_addr . inet_service; flags interval; }" in nft
    nft_check(nft)
    with pytest.raises(RegistryError):
        render(net, "iptables")


def test_default_selector_matches_the_deployed_pods() -> None:
    manifest = Path(__file__).parents[2] / "deploy" / "kubernetes" / "daemonset.yaml"
    ds = yaml.safe_load(manifest.read_text())
    labels = ds["spec"]["template"]["metadata"]["labels"]
    sel = yaml.safe_load(render(Policy.from_yaml(POLICY), "k8s-networkpolicy"))["spec"]["podSelector"][
        "matchLabels"
    ]
    assert sel.items() <= labels.items() and ds["metadata"]["namespace"] == "corral"


def test_cli_export_and_dry_run(policy_file: Path) -> None:
    r = corral(
        "firewall", "export", "--format", "cilium", "--policy", str(policy_file), "--selector", "team=rl"
    )
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.stdout)["spec"]["endpointSelector"] == {"matchLabels": {"team": "rl"}}
    r = corral("firewall", "export", "-f", "k8s-networkpolicy", "--policy", str(policy_file))
    assert r.exit_code == 0 and "warning" in r.stderr and "cannot express names" in r.stderr
    r = corral("firewall", "apply", "--dry-run", "--policy", str(policy_file))
    assert r.exit_code == 0 and r.stdout.startswith("# corral firewall")
    assert "198.18.7.2/32 . 80" in r.stdout
    r = corral("firewall", "export", "--format", "pf", "--policy", str(policy_file))
    assert r.exit_code == 2 and "unknown firewall format" in r.output
    r = corral("firewall", "export", "-f", "cilium", "--policy", str(policy_file), "--cilium-version", "1.16")
    assert r.exit_code == 2 and "1.19" in r.output


def test_cli_apply_installs_own_table_in_a_private_netns(policy_file: Path) -> None:
    ns = f"ct-fw-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        for _ in range(2):  # applying twice replaces the table, never duplicates it
            with in_netns(fd):  # this thread only; nft talks to the netns it is in
                r = corral("firewall", "apply", "--policy", str(policy_file))
            assert r.exit_code == 0, r.output
        out = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "list", "ruleset"], capture_output=True, text=True
        )
        assert out.stdout.count("table inet corral_node") == 1
        assert "93.184.7.0/24 . 443" in out.stdout and "log prefix" in out.stdout
    finally:
        os.close(fd)
        subprocess.run(["ip", "netns", "del", ns], check=False)

"""``corral firewall export|apply``: the rendered forms, and the nftables form installed for real
(in a private netns this test creates, so the machine's own firewall is never touched)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from corral.cli import app
from corral.egress._export import render
from corral.egress._nsutil import in_netns
from corral.errors import RegistryError
from corral.policy import Policy

POLICY = """
network:
  mode: allowlist
  allow: [pypi.org, "*.pythonhosted.org:443,80", "198.18.7.2:80", {cidr: 10.20.0.0/16, ports: [5432]}]
  deny: [evil.pythonhosted.org, 10.20.30.0/24]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return p


def corral(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_networkpolicy_form() -> None:
    doc = yaml.safe_load(render(Policy.from_yaml(POLICY).network, "k8s-networkpolicy"))
    assert doc["kind"] == "NetworkPolicy" and doc["spec"]["policyTypes"] == ["Egress"]
    blocks = [t["ipBlock"] for rule in doc["spec"]["egress"] for t in rule["to"] if "ipBlock" in t]
    assert {"cidr": "10.20.0.0/16", "except": ["10.20.30.0/24"]} in blocks
    assert (
        "pypi.org:443" not in str(doc["spec"])
        and "pypi.org" in doc["metadata"]["annotations"]["corral.dev/fqdn-allow-via-proxy"]
    )


def test_cilium_form_has_fqdn_rules_and_denies_metadata() -> None:
    spec = yaml.safe_load(render(Policy.from_yaml(POLICY).network, "cilium"))["spec"]
    fqdn = [r for r in spec["egress"] if "toFQDNs" in r]
    assert fqdn[0]["toFQDNs"] == [{"matchName": "pypi.org"}]
    assert fqdn[1]["toFQDNs"] == [{"matchPattern": "*.pythonhosted.org"}]
    assert fqdn[1]["toPorts"][0]["ports"] == [
        {"port": "443", "protocol": "TCP"},
        {"port": "80", "protocol": "TCP"},
    ]
    dns = spec["egress"][0]["toPorts"][0]["rules"]["dns"]
    assert {"matchPattern": "*.pythonhosted.org"} in dns
    denied = {c["cidr"] for c in spec["egressDeny"][0]["toCIDRSet"]}
    assert {"169.254.169.254/32", "100.100.100.200/32", "fd00:ec2::254/128", "10.20.30.0/24"} <= denied


def test_mode_none_renders_deny_all() -> None:
    net = Policy.default().network
    assert yaml.safe_load(render(net, "k8s-networkpolicy"))["spec"]["egress"] == []
    assert "allow_v4 { type ipv4_addr . inet_service; flags interval; }" in render(net, "nftables")
    with pytest.raises(RegistryError):
        render(net, "iptables")


def test_cli_export_and_dry_run(policy_file: Path) -> None:
    r = corral(
        "firewall", "export", "--format", "cilium", "--policy", str(policy_file), "--selector", "team=rl"
    )
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.stdout)["spec"]["endpointSelector"] == {"matchLabels": {"team": "rl"}}
    r = corral("firewall", "apply", "--dry-run", "--policy", str(policy_file))
    assert r.exit_code == 0 and r.stdout.startswith("# corral node firewall")
    assert "198.18.7.2/32 . 80" in r.stdout
    r = corral("firewall", "export", "--format", "pf", "--policy", str(policy_file))
    assert r.exit_code == 2 and "unknown firewall format" in r.output


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
        assert "10.20.30.0/24" in out.stdout and "log prefix" in out.stdout
    finally:
        os.close(fd)
        subprocess.run(["ip", "netns", "del", ns], check=False)

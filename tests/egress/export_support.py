"""Validators and evaluators for the exported firewalls, used by the export tests.

Each format is checked by its own tool (``nft -c``, kubernetes-validate, Cilium's schema) and
then evaluated for a destination the way that layer would: nftables from the sets nft itself
reports after loading the table in a private netns, NetworkPolicy and Cilium by their documented
matching rules. The property tests compare these answers with the proxy's ``Rules``.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSIONS = [f"1.{m}.0" for m in range(30, 38)]
SCHEMA = json.loads((Path(__file__).parent / "data" / "cilium-networkpolicy-v2-1.19.schema.json").read_text())
_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("cidr", raises=ValueError)
def _is_cidr(value: object) -> bool:
    return isinstance(value, str) and bool(ipaddress.ip_network(value, strict=True))


def nft_check(ruleset: str) -> None:
    """``nft -c -f``: the kernel's own parser and validator, in a throwaway network namespace."""
    r = subprocess.run(
        ["unshare", "-n", "nft", "-c", "-f", "-"], input=ruleset, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def nft_sets(ruleset: str) -> dict[str, list[Any]]:
    """Load the table in a throwaway netns and read its sets back as nft stores them."""
    script = "nft -f - && nft -j list table inet corral_node"
    r = subprocess.run(["unshare", "-n", "sh", "-c", script], input=ruleset, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sets: dict[str, list[Any]] = {}
    for item in json.loads(r.stdout)["nftables"]:
        if "set" in item:
            sets[item["set"]["name"]] = item["set"].get("elem", [])
    return sets


def _range(v: Any) -> tuple[int, int]:
    if isinstance(v, dict) and "elem" in v:
        v = v["elem"]["val"]
    if isinstance(v, dict) and "prefix" in v:
        n = ipaddress.ip_network(f"{v['prefix']['addr']}/{v['prefix']['len']}")
        return int(n.network_address), int(n.broadcast_address)
    if isinstance(v, dict) and "range" in v:
        lo, hi = v["range"]
        return (_scalar(lo), _scalar(hi))
    x = _scalar(v)
    return x, x


def _scalar(v: Any) -> int:
    return int(v) if isinstance(v, int) else int(ipaddress.ip_address(v))


def _in(elems: list[Any], ip: int, port: int | None) -> bool:
    for e in elems:
        val = e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
        if isinstance(val, dict) and "concat" in val:
            (alo, ahi), (plo, phi) = _range(val["concat"][0]), _range(val["concat"][1])
            if alo <= ip <= ahi and port is not None and plo <= port <= phi:
                return True
        else:
            lo, hi = _range(val)
            if lo <= ip <= hi:
                return True
    return False


def nft_forward_allows(sets: dict[str, list[Any]], ip: str, port: int) -> bool:
    """The ``sandbox_forward`` chain for a new TCP connection (fqdn sets empty, as at load)."""
    a = ipaddress.ip_address(ip)
    v = "v4" if a.version == 4 else "v6"
    # allow accepts first; then the deny sets drop; the fqdn sets are empty; the default drops
    return _in(sets[f"allow_{v}"], int(a), port)


def networkpolicy_allows(doc: dict[str, Any], ip: str, port: int) -> bool:
    a = ipaddress.ip_address(ip)
    for rule in doc["spec"].get("egress", []):
        ports = [p for p in rule.get("ports", []) if p.get("protocol", "TCP") == "TCP"]
        if rule.get("ports") and not any(p["port"] == port for p in ports):
            continue
        for to in rule.get("to", []):
            blk = to.get("ipBlock")
            if blk is None:
                continue
            net = ipaddress.ip_network(blk["cidr"])
            if (
                a.version == net.version
                and a in net
                and not any(
                    a in ipaddress.ip_network(x)
                    for x in blk.get("except", [])
                    if ipaddress.ip_network(x).version == a.version
                )
            ):
                return True
    return False


def _cidr_rule_has(rules: list[dict[str, Any]], a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    for r in rules:
        net = ipaddress.ip_network(r["cidr"])
        if a.version == net.version and a in net:
            ex = [ipaddress.ip_network(x) for x in r.get("except", [])]
            if not any(a.version == x.version and a in x for x in ex):
                return True
    return False


def _port_ok(rule: dict[str, Any], port: int, protocol: str = "TCP") -> bool:
    if not rule.get("toPorts"):
        return True
    return any(
        p["port"] == str(port) and p.get("protocol", "ANY") in (protocol, "ANY")
        for pr in rule["toPorts"]
        for p in pr.get("ports", [])
    )


def cilium_denies(doc: dict[str, Any], ip: str, port: int) -> bool:
    a = ipaddress.ip_address(ip)
    return any(
        _cidr_rule_has(r.get("toCIDRSet", []), a) and _port_ok(r, port)
        for r in doc["spec"].get("egressDeny", [])
    )


def cilium_allows_ip(doc: dict[str, Any], ip: str, port: int) -> bool:
    a = ipaddress.ip_address(ip)
    allowed = any(
        _cidr_rule_has(r.get("toCIDRSet", []), a) and _port_ok(r, port) for r in doc["spec"].get("egress", [])
    )
    return allowed and not cilium_denies(doc, ip, port)


def cilium_name_matches(sel: dict[str, str], name: str) -> bool:
    """Cilium FQDN matching: matchName exact, `**.x` any strict subdomain (1.19+), `*` one label."""
    name = name.lower().rstrip(".")
    if "matchName" in sel:
        return name == sel["matchName"].lower().rstrip(".")
    pat = sel["matchPattern"].lower().rstrip(".")
    if pat.startswith("**."):
        return name.endswith(pat[2:]) and len(name) > len(pat) - 2
    labels, plabels = name.split("."), pat.split(".")
    if len(labels) != len(plabels):
        return False
    import fnmatch

    return all(fnmatch.fnmatchcase(x, p) for x, p in zip(labels, plabels, strict=True))


def cilium_allows_name(doc: dict[str, Any], name: str, port: int) -> bool:
    return any(
        "toFQDNs" in r and _port_ok(r, port) and any(cilium_name_matches(s, name) for s in r["toFQDNs"])
        for r in doc["spec"].get("egress", [])
    )


def validate_cilium(doc: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=_FORMATS).validate(doc)
    for sel in [s for r in doc["spec"].get("egress", []) for s in r.get("toFQDNs", [])]:
        if "**" in sel.get("matchPattern", ""):  # 1.19 accepts '**' only as a leading '**.'
            assert sel["matchPattern"].startswith("**.") and "*" not in sel["matchPattern"][3:], sel


def validate_k8s(text: str) -> list[dict[str, Any]]:
    """Every document through kubernetes-validate --strict, for each Kubernetes release 1.30-1.37."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        for v in K8S_VERSIONS:
            kubernetes_validate.validate(doc, v, strict=True)
    return docs

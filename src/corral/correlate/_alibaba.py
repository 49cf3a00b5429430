"""Alibaba Cloud logs as exported from its Simple Log Service (JSON lines or CSV with header).

VPC flow logs (``__topic__`` ``flow_log``): fields ``version``, ``vswitch-id``,
``vm-id``, ``vpc-id``, ``account-id``, ``eni-id``, ``srcaddr``, ``srcport``,
``dstaddr``, ``dstport``, ``protocol``, ``direction`` (in/out), ``packets``,
``bytes``, ``start``, ``end`` (Unix seconds), ``log-status``, ``action``
(ACCEPT/REJECT), per the SLS "VPC flow log fields" page.

Cloud Firewall traffic logs (``__topic__`` ``cloudfirewall_access_log``):
``src_ip``, ``src_port``, ``dst_ip``, ``dst_port``, ``ip_protocol``,
``rule_result``, ``direction``, ``start_time``, ``end_time``, ``acl_rule_id``,
``ips_rule_name``, ``attack_type_name_en``, ``domain``, ``aliuid``, byte and
packet counters, per the Cloud Firewall "Log field descriptions" page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from corral.correlate._keyed import KeyedReader, head_keys, pick
from corral.correlate._record import LogRecord, parse_time, proto_name, to_int
from corral.correlate._registry import register

_FW_RESULT = {"pass": "accept", "accept": "accept", "allow": "accept", "drop": "deny", "deny": "deny"}
_NULL_RULE = "00000000-0000-0000-0000-000000000000"


@register
class AlibabaVpcFlowReader(KeyedReader):
    """Alibaba Cloud VPC flow logs exported from SLS."""

    name = "alibaba-vpc-flow"
    title = "Alibaba Cloud VPC flow logs"
    detect_order = 30

    def sniff(self, head: list[str]) -> bool:
        keys, obj = head_keys(head)
        if obj is not None and obj.get("__topic__") == "flow_log":
            return True
        return {"eni-id", "srcaddr", "dstaddr", "direction"} <= keys

    def parse_row(self, row: dict[str, Any], line: int, src: str) -> Iterable[LogRecord]:
        if row.get("log-status") in {"NODATA", "SKIPDATA"}:
            return []
        src_ip, dst_ip = pick(row, "srcaddr"), pick(row, "dstaddr")
        if not src_ip or not dst_ip:
            raise ValueError("no source or destination address")
        acct = pick(row, "account-id")
        return [
            LogRecord(
                file=src,
                line=line,
                format=self.name,
                start=parse_time(pick(row, "start")),
                end=parse_time(pick(row, "end")),
                src_ip=str(src_ip),
                src_port=to_int(pick(row, "srcport")),
                dst_ip=str(dst_ip),
                dst_port=to_int(pick(row, "dstport")),
                proto=proto_name(pick(row, "protocol")),
                action={"ACCEPT": "accept", "REJECT": "deny"}.get(str(pick(row, "action"))),
                bytes=to_int(pick(row, "bytes")),
                packets=to_int(pick(row, "packets")),
                reporter=pick(row, "vm-id", "eni-id"),
                direction=pick(row, "direction"),
                detail=f"account={acct}" if acct else None,
            )
        ]


@register
class AlibabaCloudFirewallReader(KeyedReader):
    """Alibaba Cloud Firewall traffic logs exported from SLS."""

    name = "alibaba-cloudfirewall"
    title = "Alibaba Cloud Firewall traffic logs"
    detect_order = 30

    def sniff(self, head: list[str]) -> bool:
        keys, obj = head_keys(head)
        if obj is not None and obj.get("__topic__") == "cloudfirewall_access_log":
            return True
        return {"src_ip", "dst_ip", "rule_result"} <= keys

    def parse_row(self, row: dict[str, Any], line: int, src: str) -> Iterable[LogRecord]:
        src_ip, dst_ip = pick(row, "src_ip"), pick(row, "dst_ip")
        if not src_ip or not dst_ip:
            raise ValueError("no source or destination address")
        result = str(pick(row, "rule_result") or "").lower()
        attack = pick(row, "attack_type_name_en", "ips_rule_name_en", "ips_rule_name")
        acl = pick(row, "acl_rule_id")
        signature = attack or (acl if acl and acl != _NULL_RULE else None)
        start = parse_time(pick(row, "start_time", "__time__"))
        end = parse_time(pick(row, "end_time")) or start
        details = [f"{k}={row[k]}" for k in ("domain", "app_name", "aliuid") if pick(row, k)]
        return [
            LogRecord(
                file=src,
                line=line,
                format=self.name,
                kind="alert" if attack else "flow",
                start=start,
                end=end,
                src_ip=str(src_ip),
                src_port=to_int(pick(row, "src_port")),
                dst_ip=str(dst_ip),
                dst_port=to_int(pick(row, "dst_port")),
                proto=proto_name(pick(row, "ip_protocol", "proto")),
                action=_FW_RESULT.get(result, result or None),
                bytes=to_int(pick(row, "total_packet_bytes")),
                packets=to_int(pick(row, "total_packet_count")),
                reporter=pick(row, "cloud_instance_id", "firewall_id", "region_id"),
                signature=str(signature) if signature else None,
                severity="high" if attack else None,
                direction=pick(row, "direction"),
                detail=" ".join(details) or None,
            )
        ]

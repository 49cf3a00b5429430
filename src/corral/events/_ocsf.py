"""Events as OCSF-shaped records (schema 1.3) for SIEM ingestion.

Classes used: Process Activity (1007), Network Activity (4001), DNS Activity
(4003), Detection Finding (2004), File System Activity (1001) for denied file
access; everything else is a Base Event (0). The RL trace context, which OCSF
has no place for, goes under ``unmapped.corral``; ``metadata.correlation_uid``
is the tool call id so a SIEM can group one call's records.
"""

from __future__ import annotations

import os
from typing import Any

from corral.events._model import (
    Alert,
    DnsQuery,
    Event,
    FileDenied,
    NetworkConnection,
    ProcessExit,
    ProcessStart,
)
from corral.events._timefmt import rfc3339_ns

OCSF_VERSION = "1.3.0"

_CATEGORY = {0: 0, 1001: 1, 1007: 1, 4001: 4, 4003: 4, 2004: 2}
_SEVERITY = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


def _file(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    return {"path": path, "name": os.path.basename(path), "type_id": 1}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _process(d: ProcessStart | ProcessExit) -> dict[str, Any]:
    if isinstance(d, ProcessStart):
        parent = _drop_none(
            {"pid": d.ParentProcessId, "file": _file(d.ParentImage), "cmd_line": d.ParentCommandLine}
        )
        user = {"uid": d.User, "name": d.User} if d.User else None
        return _drop_none(
            {
                "pid": d.ProcessId,
                "file": _file(d.Image),
                "name": os.path.basename(d.Image) if d.Image else None,
                "cmd_line": d.CommandLine,
                "working_directory": d.CurrentDirectory,
                "user": user,
                "parent_process": parent or None,
            }
        )
    return _drop_none({"pid": d.ProcessId, "file": _file(d.Image)})


def _class_fields(event: Event) -> tuple[int, int, dict[str, Any]]:
    """(class_uid, activity_id, class-specific attributes)."""
    d = event.data
    if isinstance(d, ProcessStart):
        return 1007, 1, {"process": _process(d), "actor": {"process": _process(d).get("parent_process", {})}}
    if isinstance(d, ProcessExit):
        return 1007, 2, {"process": _process(d), "exit_code": d.exit_code}
    if isinstance(d, NetworkConnection):
        allowed = d.decision == "allowed"
        fields: dict[str, Any] = {
            "dst_endpoint": _drop_none(
                {"ip": d.DestinationIp, "port": d.DestinationPort, "hostname": d.DestinationHostname}
            ),
            "src_endpoint": _drop_none({"ip": d.SourceIp, "port": d.SourcePort}),
            "connection_info": {
                "protocol_name": d.Protocol.lower(),
                "direction_id": 2,
                "direction": "Outbound",
            },
            "traffic": {"bytes_out": d.bytes_sent, "bytes_in": d.bytes_received},
            "action_id": 1 if allowed else 2,
            "disposition_id": 1 if allowed else 2,
        }
        return 4001, 1 if allowed else 5, fields  # 1 Open, 5 Refuse
    if isinstance(d, DnsQuery):
        allowed = d.decision == "allowed"
        fields = {
            "query": {"hostname": d.QueryName, "type": d.QueryType},
            "answers": [{"rdata": a} for a in d.answers],
            "action_id": 1 if allowed else 2,
            "disposition_id": 1 if allowed else 2,
        }
        return 4003, 1, fields  # 1 Query
    if isinstance(d, FileDenied):
        fields = {
            "file": _file(d.TargetFilename),
            "actor": {"process": {"file": _file(d.Image)}} if d.Image else None,
            "action_id": 2,
            "disposition_id": 2,
        }
        return 1001, 99, fields
    if isinstance(d, Alert):
        fields = {
            "finding_info": {
                "uid": f"{d.rule_id}:{event.seq}" if event.seq is not None else d.rule_id,
                "title": d.title,
                "types": [d.category],
                "analytic": {"uid": d.rule_id, "name": d.title, "type_id": 1, "type": "Rule"},
                "attacks": [
                    {"technique": {"uid": t.split(".", 1)[1].upper()}}
                    for t in d.tags
                    if t.startswith("attack.t")
                ],
            },
            "evidences": [{"data": d.matched}] if d.matched else None,
        }
        return 2004, 1, fields  # 1 Create
    return 0, 99, {}


def to_ocsf(event: Event) -> dict[str, Any]:
    """One event as an OCSF-shaped dict (JSON-serialisable)."""
    class_uid, activity_id, fields = _class_fields(event)
    d = event.data
    severity = _SEVERITY.get(str(d.level), 1) if isinstance(d, Alert) else 1
    denied = getattr(d, "decision", None) == "denied" or isinstance(d, FileDenied)
    c = event.ctx
    rec: dict[str, Any] = {
        "class_uid": class_uid,
        "category_uid": _CATEGORY[class_uid],
        "activity_id": activity_id,
        "type_uid": class_uid * 100 + activity_id,
        "time": event.time_ns // 1_000_000,
        "time_dt": rfc3339_ns(event.time_ns),
        "severity_id": severity,
        "status_id": 2 if denied else 1,
        "metadata": _drop_none(
            {
                "version": OCSF_VERSION,
                "product": {"name": "Corral", "vendor_name": "Corral"},
                "uid": str(event.seq) if event.seq is not None else None,
                "correlation_uid": c.tool_call_id,
                "event_code": d.kind,
            }
        ),
        "device": _drop_none({"hostname": event.host, "type_id": 0}),
        "unmapped": {
            "corral": _drop_none(
                {
                    "type": d.kind,
                    "sandbox_id": event.sandbox_id,
                    "run_id": c.run_id,
                    "step": c.step,
                    "episode_id": c.episode_id,
                    "turn": c.turn,
                    "tool_call_id": c.tool_call_id,
                    "seq": event.seq,
                }
            )
        },
    }
    if class_uid == 0:
        rec["message"] = d.kind
        rec["unmapped"]["corral"]["data"] = d.model_dump(mode="json", exclude={"kind"})
    rec.update({k: v for k, v in fields.items() if v is not None})
    return rec

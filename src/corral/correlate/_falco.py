"""Falco alerts with ``json_output: true``.

Top-level ``time``, ``rule``, ``priority``, ``output``, ``source``, ``tags``,
``hostname`` and ``output_fields`` holding the rule's output fields, from which
network alerts give ``fd.cip``/``fd.cport``/``fd.sip``/``fd.sport`` (or
``fd.name`` as ``cip:cport->sip:sport``) and ``fd.l4proto``, and the workload
``container.id``/``k8s.pod.name``/``proc.cmdline`` (Falco "Supported fields").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from corral.correlate._record import LogRecord, parse_time, proto_name, to_int
from corral.correlate._registry import JsonLineReader, first_json, register

_PRIORITY = {
    "emergency": "critical",
    "alert": "critical",
    "critical": "critical",
    "error": "high",
    "warning": "medium",
    "notice": "low",
    "informational": "informational",
    "info": "informational",
    "debug": "informational",
}
_FD_NAME = re.compile(r"^\[?(?P<cip>[^\]]+?)\]?:(?P<cport>\d+)->\[?(?P<sip>[^\]]+?)\]?:(?P<sport>\d+)$")


@register
class FalcoReader(JsonLineReader):
    """Falco JSON alerts."""

    name = "falco"
    title = "Falco JSON alerts"
    detect_order = 30

    def sniff(self, head: list[str]) -> bool:
        obj = first_json(head)
        return obj is not None and {"rule", "priority", "output_fields"} <= obj.keys()

    def parse_obj(self, obj: dict[str, Any], line: int, src: str) -> Iterable[LogRecord]:
        of: dict[str, Any] = obj.get("output_fields") or {}
        ts = parse_time(obj.get("time") or of.get("evt.time"))
        if ts is None:
            raise ValueError("alert without time")
        cip, cport, sip, sport = of.get("fd.cip"), of.get("fd.cport"), of.get("fd.sip"), of.get("fd.sport")
        fd_name = of.get("fd.name")
        if (
            not (cip and sip)
            and isinstance(fd_name, str)
            and len(fd_name) <= 120
            and (m := _FD_NAME.match(fd_name))
        ):
            cip, cport, sip, sport = m["cip"], m["cport"], m["sip"], m["sport"]
        workload = of.get("container.id") or of.get("k8s.pod.name") or of.get("container.name")
        cmd = of.get("proc.cmdline")
        return [
            LogRecord(
                file=src,
                line=line,
                format=self.name,
                kind="alert",
                start=ts,
                end=ts,
                src_ip=cip,
                src_port=to_int(cport),
                dst_ip=sip,
                dst_port=to_int(sport),
                proto=proto_name(of.get("fd.l4proto")),
                action="alert",
                reporter=obj.get("hostname"),
                signature=str(obj["rule"]),
                severity=_PRIORITY.get(str(obj.get("priority", "")).lower(), "medium"),
                detail=f"cmd={cmd}" if isinstance(cmd, str) and cmd else None,
                workload=str(workload) if workload and workload != "host" else None,
            )
        ]

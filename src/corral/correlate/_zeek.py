"""Zeek conn.log, as TSV (``#separator``/``#fields`` header) or as JSON lines.

Fields, from Zeek's ``Conn::Info`` record: ``ts uid id.orig_h id.orig_p
id.resp_h id.resp_p proto service duration orig_bytes resp_bytes conn_state
local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts
resp_ip_bytes tunnel_parents``; TSV order is whatever ``#fields`` says, and
``#unset_field`` (``-``) marks missing values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from corral.correlate._record import LogRecord, parse_time, proto_name, to_int
from corral.correlate._registry import LineReader, first_json, load_json, register


@register
class ZeekConnReader(LineReader):
    """Zeek conn.log (TSV with header, or JSON)."""

    name = "zeek-conn"
    title = "Zeek conn.log"
    detect_order = 30

    def sniff(self, head: list[str]) -> bool:
        if head[0].startswith("#separator"):
            return any(ln.startswith("#path") and "conn" in ln for ln in head[:8]) or any(
                ln.startswith("#fields") and "id.orig_h" in ln for ln in head[:10]
            )
        obj = first_json(head)
        return obj is not None and "id.orig_h" in obj and "uid" in obj and "conn_state" in obj

    def new_state(self) -> dict[str, Any]:
        return {"sep": "\t", "unset": "-", "fields": None}

    def parse_line(self, text: str, line: int, src: str, state: dict[str, Any]) -> Iterable[LogRecord]:
        if text.startswith("#"):
            key, _, value = text.partition(" " if text.startswith("#separator") else state["sep"])
            if key == "#separator":
                sep = value.encode().decode("unicode_escape")
                if len(sep) != 1:
                    raise ValueError(f"#separator must be one character, got {value[:20]!r}")
                state["sep"] = sep
            elif key == "#unset_field":
                state["unset"] = value
            elif key == "#fields":
                state["fields"] = value.split(state["sep"])
            return []
        if text.startswith("{"):
            row = load_json(text)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        else:
            if state["fields"] is None:
                raise ValueError("TSV line before #fields header")
            cols = text.split(state["sep"])
            if len(cols) != len(state["fields"]):
                raise ValueError(f"{len(cols)} columns, #fields has {len(state['fields'])}")
            row = {
                k: (None if v == state["unset"] else v) for k, v in zip(state["fields"], cols, strict=True)
            }
        ts = parse_time(row["ts"])
        if ts is None:
            raise ValueError("no ts")
        duration = parse_time(row.get("duration")) or 0.0
        ob, rb = to_int(row.get("orig_bytes")), to_int(row.get("resp_bytes"))
        op, rp = to_int(row.get("orig_pkts")), to_int(row.get("resp_pkts"))
        state_str = row.get("conn_state")
        return [
            LogRecord(
                file=src,
                line=line,
                format=self.name,
                start=ts,
                end=ts + duration,
                src_ip=row["id.orig_h"],
                src_port=to_int(row.get("id.orig_p")),
                dst_ip=row["id.resp_h"],
                dst_port=to_int(row.get("id.resp_p")),
                proto=proto_name(row.get("proto")),
                bytes=None if ob is None and rb is None else (ob or 0) + (rb or 0),
                packets=None if op is None and rp is None else (op or 0) + (rp or 0),
                action=None,  # Zeek observes; it does not decide
                signature=row.get("service") if isinstance(row.get("service"), str) else None,
                detail=f"uid={row.get('uid')} conn_state={state_str}",
                flow_id=row["uid"] if isinstance(row.get("uid"), str) else None,
            )
        ]

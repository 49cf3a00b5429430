"""conntrack event lines (``conntrack -E``, optionally ``-o timestamp,id``), NAT included.

A line is ``[ts]? [NEW|UPDATE|DESTROY] proto num [timeout] [state] src= dst=
sport= dport= [packets= bytes=] [UNREPLIED] src= dst= sport= dport= ...``: the
first tuple is the original direction (the sandbox's own addresses), the second
the reply direction, whose destination is the address the outside world saw
after source NAT (the node's address and translated port), as described in
conntrack(8) and the kernel's nf_conntrack text format. With ``-o id`` each line
ends in ``id=N``, the entry's id: the NEW, UPDATE and DESTROY events of one
connection share it, which is how a flow's later events find its first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from corral.correlate._record import LogRecord, proto_name
from corral.correlate._registry import LineReader, register

_LINE = re.compile(
    r"^\s*(?:\[(?P<ts>\d+(?:\.\d+)?)\]\s+)?\[(?P<ev>NEW|UPDATE|DESTROY)\]\s+(?P<proto>\w+)\s+(?P<num>\d+)\s"
)
_KV = re.compile(r"\b(src|dst|sport|dport|packets|bytes)=(\S+)")
_ID = re.compile(r"\bid=(\d{1,20})\b")


@register
class ConntrackReader(LineReader):
    """conntrack -E event lines with original and reply (NAT) tuples."""

    name = "conntrack"
    title = "conntrack events (conntrack -E)"
    detect_order = 20

    def __init__(self, host: str | None = None) -> None:
        self.host = host

    def sniff(self, head: list[str]) -> bool:
        return any(_LINE.match(ln) for ln in head[:10])

    def parse_line(self, text: str, line: int, src: str, state: dict[str, Any]) -> Iterable[LogRecord]:
        m = _LINE.match(text)
        if not m:
            raise ValueError("not a conntrack event line")
        orig: dict[str, str] = {}
        reply: dict[str, str] = {}
        counters = {"packets": 0, "bytes": 0}
        for k, v in _KV.findall(text[m.end() :]):
            if k in ("packets", "bytes"):
                counters[k] += int(v)
            elif k not in orig:
                orig[k] = v
            else:
                reply[k] = v
        if not {"src", "dst"} <= orig.keys() or not {"src", "dst"} <= reply.keys():
            raise ValueError("missing original or reply tuple")
        ts = float(m["ts"]) if m["ts"] else None
        event = m["ev"]
        cid = _ID.search(text, m.end())
        return [
            LogRecord(
                file=src,
                line=line,
                format=self.name,
                kind="conntrack",
                start=ts,
                end=ts,
                src_ip=orig["src"],
                dst_ip=orig["dst"],
                src_port=int(orig["sport"]) if "sport" in orig else None,
                dst_port=int(orig["dport"]) if "dport" in orig else None,
                proto=proto_name(m["proto"]),
                reply_src_ip=reply["src"],
                reply_dst_ip=reply["dst"],
                reply_src_port=int(reply["sport"]) if "sport" in reply else None,
                reply_dst_port=int(reply["dport"]) if "dport" in reply else None,
                bytes=counters["bytes"] or None,
                packets=counters["packets"] or None,
                reporter=self.host,
                direction="out",
                detail=f"event={event}",
                flow_id=cid[1] if cid else None,
            )
        ]

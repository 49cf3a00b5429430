"""Linux netfilter LOG lines (iptables ``-j LOG``, nftables ``log``) from syslog or the journal.

The kernel prints ``PREFIX IN=eth0 OUT= MAC=... SRC=a DST=b LEN=60 ... PROTO=TCP
SPT=1 DPT=2 ...`` (nf_log_syslog); syslog or journald put a time and host in
front. Accepted time stamps: RFC 3339 (``journalctl -o short-iso`` and RFC 5424)
and the BSD ``Mon DD HH:MM:SS`` form, whose missing year is the ``year`` option
(default: the current UTC year).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from corral.correlate._record import LogRecord, parse_time, proto_name
from corral.correlate._registry import LineReader, register

_KV = re.compile(r"\b([A-Z]+)=(\S*)")
_BSD = re.compile(
    r"^(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)(?:\.\d+)? (?P<host>\S+) "
)
_ISO = re.compile(r"^(?:<\d+>\d? ?)?(?P<ts>\d{4}-\d\d-\d\dT\S+) (?P<host>\S+) ")
# After "kernel": "[pid]:" or ":", then RFC 5424's "- - -", then the kernel's "[ uptime]", then the prefix.
_KERNEL_TAG = re.compile(r"(?:\[\d+\])?:? (?:-[ \t]+-[ \t]+-[ \t]+)?(?:\[[ \t]*[\d.]+\] )?")
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}  # noqa: SIM905


def _prefix(text: str) -> str:
    """The LOG target's prefix: between the kernel tag and ``IN=`` (string search, linear time)."""
    k = text.find("kernel")
    if k < 0:
        return ""
    j = text.find("IN=", k)
    if j < 0:
        return ""
    m = _KERNEL_TAG.match(text, k + 6, j)
    return text[m.end() if m else j : j].strip()[:200]


def _action(prefix: str) -> str:
    p = prefix.upper()
    if any(w in p for w in ("DROP", "REJECT", "DENY", "BLOCK")):
        return "deny"
    if any(w in p for w in ("ACCEPT", "ALLOW")):
        return "accept"
    return "log"


@register
class NetfilterLogReader(LineReader):
    """iptables/nftables LOG target lines in syslog or journal text."""

    name = "netfilter"
    title = "Linux netfilter LOG (iptables/nftables)"
    detect_order = 40

    def __init__(self, year: int | None = None) -> None:
        self.year = year or datetime.now(UTC).year

    def sniff(self, head: list[str]) -> bool:
        return any(" IN=" in ln and " SRC=" in ln and " DST=" in ln for ln in head[:10])

    def parse_line(self, text: str, line: int, src: str, state: dict[str, Any]) -> Iterable[LogRecord]:
        if " SRC=" not in text:
            return []  # counted as ignored: other kernel or daemon messages in the same syslog
        host: str | None = None
        ts: float | None = None
        if m := _ISO.match(text):
            ts, host = parse_time(m["ts"]), m["host"]
        elif m := _BSD.match(text):
            h, mi, s = (int(x) for x in m["hms"].split(":"))
            dt = datetime(self.year, _MONTHS[m["mon"]], int(m["day"]), h, mi, s, tzinfo=UTC)
            ts, host = dt.timestamp(), m["host"]
        else:
            raise ValueError("no time stamp")
        kv = dict(_KV.findall(text))
        if not kv.get("SRC") or not kv.get("DST"):
            raise ValueError("no SRC/DST")
        prefix = _prefix(text)
        ifaces = f"in={kv.get('IN', '')} out={kv.get('OUT', '')}"
        return [
            LogRecord(
                file=src,
                line=line,
                format=self.name,
                start=ts,
                end=ts,
                src_ip=kv["SRC"],
                dst_ip=kv["DST"],
                src_port=int(kv["SPT"]) if kv.get("SPT") else None,
                dst_port=int(kv["DPT"]) if kv.get("DPT") else None,
                proto=proto_name(kv.get("PROTO")),
                action=_action(prefix),
                bytes=int(kv["LEN"]) if kv.get("LEN") else None,
                packets=1,
                reporter=host,
                signature=prefix or None,
                direction="out" if kv.get("OUT") else "in",
                detail=ifaces,
            )
        ]

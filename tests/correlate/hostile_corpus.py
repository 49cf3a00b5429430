"""Inputs that crashed or hung the log readers before they were hardened, kept as regression cases.

Each case builds its file (some are megabytes, so they are recipes rather than
files in the repository), names the format it is read as, and says how many
records must survive and how many lines must be counted as malformed. Found by
hand and by the property tests; the comment says what each one did before.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

T = 1795000000
SB, NODE, BAD = "192.0.2.101", "192.0.2.10", "203.0.113.50"

GOOD: dict[str, dict[str, Any]] = {
    "suricata-eve": {
        "timestamp": "2026-11-17T03:33:42.000000+0000",
        "flow_id": 1,
        "event_type": "flow",
        "src_ip": SB,
        "src_port": 40312,
        "dest_ip": BAD,
        "dest_port": 3333,
        "proto": "TCP",
        "flow": {"start": "2026-11-17T03:33:41.000000+0000", "end": "2026-11-17T03:33:44.000000+0000"},
    },
    "falco": {
        "time": "2026-11-17T03:33:42.0Z",
        "rule": "Outbound connection",
        "priority": "Warning",
        "output": "x",
        "hostname": "node-a",
        "output_fields": {
            "fd.cip": SB,
            "fd.cport": 40312,
            "fd.sip": BAD,
            "fd.sport": 3333,
            "fd.l4proto": "tcp",
        },
    },
    "hubble": {
        "flow": {
            "time": "2026-11-17T03:33:42.0Z",
            "verdict": "DROPPED",
            "IP": {"source": SB, "destination": BAD},
            "l4": {"TCP": {"source_port": 40312, "destination_port": 3333}},
            "traffic_direction": "EGRESS",
        }
    },
    "gcp-vpc": {
        "timestamp": "2026-11-17T03:33:42Z",
        "logName": "projects/p/logs/compute.googleapis.com%2Fvpc_flows",
        "jsonPayload": {
            "connection": {
                "src_ip": SB,
                "src_port": "40312",
                "dest_ip": BAD,
                "dest_port": "3333",
                "protocol": 6,
            },
            "start_time": "2026-11-17T03:33:41Z",
            "end_time": "2026-11-17T03:33:44Z",
            "bytes_sent": "10",
            "reporter": "SRC",
        },
    },
    "zeek-conn": {
        "ts": T,
        "uid": "C1",
        "id.orig_h": SB,
        "id.orig_p": 40312,
        "id.resp_h": BAD,
        "id.resp_p": 3333,
        "proto": "tcp",
        "conn_state": "S0",
        "duration": 1.5,
    },
    "alibaba-vpc-flow": {
        "__topic__": "flow_log",
        "srcaddr": SB,
        "dstaddr": BAD,
        "srcport": "40312",
        "dstport": "3333",
        "protocol": "6",
        "direction": "out",
        "start": str(T),
        "end": str(T + 5),
        "action": "REJECT",
        "eni-id": "eni-1",
    },
    "generic": {"timestamp": T, "src_ip": SB, "dst_ip": BAD, "dst_port": 22},
}
AWS = f"2 123456789012 eni-1 {SB} {BAD} 40312 3333 6 12 1840 {T} {T + 3} REJECT OK"
CONNTRACK = (
    f"[{T}.0] [NEW] tcp 6 120 SYN_SENT src={SB} dst={BAD} sport=40312 dport=3333 "
    f"[UNREPLIED] src={BAD} dst={NODE} sport=3333 dport=61001 id=77"
)
NETFILTER = (
    f"2026-11-17T03:33:42+00:00 node-a kernel: [ 1.0] CORRAL-DROP IN=eth0 OUT= SRC={SB} DST={BAD} "
    "LEN=60 PROTO=TCP SPT=40312 DPT=3333"
)
FW_HEADER = "__time__,__topic__,src_ip,dst_ip,src_port,dst_port,rule_result,ip_protocol,start_time"
FW_ROW = f"{T},cloudfirewall_access_log,{NODE},{BAD},61001,3333,drop,tcp,{T}"


def good_line(fmt: str) -> str:
    if fmt == "aws-vpc-flow":
        return AWS
    if fmt == "conntrack":
        return CONNTRACK
    if fmt == "netfilter":
        return NETFILTER
    return json.dumps(GOOD[fmt])


def mutated(fmt: str, path: list[str], value: Any) -> str:
    obj = json.loads(json.dumps(GOOD[fmt]))
    cur = obj
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return json.dumps(obj)


def around(fmt: str, bad: str) -> str:
    """A bad line between two good ones: both good records must survive."""
    g = good_line(fmt)
    return f"{g}\n{bad}\n{g}\n"


@dataclass(frozen=True)
class Case:
    name: str
    format: str
    build: Callable[[Path], None]
    records: int
    malformed: int
    before: str  # what the unhardened reader did


def _text(content: str) -> Callable[[Path], None]:
    return lambda p: p.write_text(content)


def _truncated_gz(content: str, keep: float) -> Callable[[Path], None]:
    def build(p: Path) -> None:
        data = gzip.compress(content.encode())
        p.write_bytes(data[: int(len(data) * keep)])

    return build


def _mut(fmt: str, path: list[str], value: Any) -> Callable[[Path], None]:
    return _text(around(fmt, mutated(fmt, path, value)))


def _bad(fmt: str, line: str) -> Callable[[Path], None]:
    return _text(around(fmt, line))


_DEEP_ARRAY = "[" * 100_000 + "]" * 100_000
_DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000
_AZURE_HUGE = {
    "records": [
        {
            "properties": {
                "flows": [
                    {
                        "rule": "r",
                        "flows": [
                            {
                                "mac": "m",
                                "flowTuples": [
                                    f"{'9' * 400},{SB},{BAD},1,2,T,O,D,B,,,,",
                                    f"{T},{SB},{BAD},1,2,T,O,D,B,,,,",
                                ],
                            }
                        ],
                    }
                ]
            }
        }
    ]
}
_FW_HUGE_FIELD = f'{FW_HEADER}\n{FW_ROW}\n{T},x,{NODE},"{"x" * 200_000}",1,2,drop,tcp,{T}\n{FW_ROW}\n'
_KERNELS = "2026-11-17T03:33:42+00:00 node-a " + "kernel " * 60_000 + f" SRC={SB} DST={BAD}"
_GENERIC_DEEP = '{"src_ip": "192.0.2.1", "dst_ip": "192.0.2.2", "x": ' + _DEEP_OBJECT + "}"
_SURICATA_GZ = (good_line("suricata-eve") + "\n") * 3000

CASES: list[Case] = [
    Case(
        "suricata-huge-port",
        "suricata-eve",
        _mut("suricata-eve", ["src_port"], 10**30),
        2,
        1,
        "OverflowError",
    ),
    Case(
        "suricata-huge-time",
        "suricata-eve",
        _mut("suricata-eve", ["timestamp"], 10**400),
        2,
        1,
        "OverflowError",
    ),
    Case(
        "suricata-wrong-type",
        "suricata-eve",
        _mut("suricata-eve", ["src_ip"], {"a": [1]}),
        2,
        1,
        "ArrowTypeError",
    ),
    Case(
        "suricata-deep",
        "suricata-eve",
        _bad("suricata-eve", f'{{"x": {_DEEP_ARRAY}}}'),
        2,
        1,
        "RecursionError",
    ),
    Case("suricata-long-line", "suricata-eve", _bad("suricata-eve", "x" * (3 << 20)), 2, 1, "held whole"),
    Case("suricata-truncated-gz", "suricata-eve", _truncated_gz(_SURICATA_GZ, 0.66), -1, -1, "EOFError"),
    Case("falco-wrong-type", "falco", _mut("falco", ["hostname"], ["a", "b"]), 2, 1, "ArrowTypeError"),
    Case(
        "falco-huge-port",
        "falco",
        _mut("falco", ["output_fields", "fd.sport"], 10**25),
        2,
        1,
        "OverflowError",
    ),
    Case(
        "falco-backtracking",
        "falco",
        _mut("falco", ["output_fields"], {"fd.name": "a:1->" * 40_000}),
        3,
        0,
        "hung",
    ),
    Case("hubble-wrong-type", "hubble", _mut("hubble", ["flow", "l4"], [1, 2]), 2, 1, "counted (kept)"),
    Case(
        "hubble-infinite-time",
        "hubble",
        _mut("hubble", ["flow", "time"], float("inf")),
        2,
        1,
        "inf attributed",
    ),
    Case(
        "gcp-huge-port",
        "gcp-vpc",
        _mut("gcp-vpc", ["jsonPayload", "connection", "dest_port"], "9" * 40),
        2,
        1,
        "OverflowError",
    ),
    Case("gcp-deep-array-document", "gcp-vpc", _text(_DEEP_ARRAY + "\n"), 0, 1, "RecursionError"),
    Case("zeek-huge-ts", "zeek-conn", _mut("zeek-conn", ["ts"], 10**400), 2, 1, "OverflowError"),
    Case(
        "zeek-nan-ts",
        "zeek-conn",
        _bad("zeek-conn", good_line("zeek-conn").replace(str(T), "NaN")),
        2,
        1,
        "NaN attributed",
    ),
    Case(
        "zeek-bad-separator",
        "zeek-conn",
        _text("#separator \\x\n#fields\tts\tuid\tid.orig_h\n"),
        0,
        1,
        "counted (kept)",
    ),
    Case(
        "alibaba-wrong-type",
        "alibaba-vpc-flow",
        _mut("alibaba-vpc-flow", ["srcport"], [1]),
        2,
        1,
        "counted (kept)",
    ),
    Case("alibaba-csv-field-over-limit", "alibaba-cloudfirewall", _text(_FW_HUGE_FIELD), 2, 1, "csv.Error"),
    Case("generic-huge-port", "generic", _mut("generic", ["dst_port"], 10**20), 2, 1, "OverflowError"),
    Case("generic-deep-object", "generic", _bad("generic", _GENERIC_DEEP), 2, 1, "RecursionError"),
    Case(
        "aws-huge-port",
        "aws-vpc-flow",
        _bad("aws-vpc-flow", AWS.replace(" 3333 ", " " + "9" * 23 + " ")),
        2,
        1,
        "counted (kept)",
    ),
    Case(
        "aws-port-out-of-range",
        "aws-vpc-flow",
        _bad("aws-vpc-flow", AWS.replace(" 3333 ", " 70000 ")),
        2,
        1,
        "port 70000 kept",
    ),
    Case(
        "aws-empty-edge-fields",
        "aws-vpc-flow",
        _bad("aws-vpc-flow", " " + AWS[2:-2] + " "),
        2,
        1,
        "dropped, not counted",
    ),
    Case("aws-truncated-gz", "aws-vpc-flow", _truncated_gz((AWS + "\n") * 2000, 0.5), -1, -1, "OSError"),
    Case(
        "conntrack-huge-bytes",
        "conntrack",
        _bad("conntrack", CONNTRACK.replace("[UNREPLIED]", "bytes=" + "9" * 30)),
        2,
        1,
        "OverflowError",
    ),
    Case(
        "conntrack-infinite-time",
        "conntrack",
        _bad("conntrack", CONNTRACK.replace(f"[{T}.0]", f"[{'9' * 400}]")),
        2,
        1,
        "inf attributed",
    ),
    Case(
        "netfilter-huge-port",
        "netfilter",
        _bad("netfilter", NETFILTER.replace("SPT=40312", "SPT=" + "9" * 30)),
        2,
        1,
        "OverflowError",
    ),
    Case("netfilter-backtracking", "netfilter", _bad("netfilter", _KERNELS), 3, 0, "hung"),
    Case(
        "azure-deep-document",
        "azure-nsg-flow",
        _text('{"records": ' + _DEEP_ARRAY + "}"),
        0,
        1,
        "RecursionError",
    ),
    Case("azure-huge-time", "azure-nsg-flow", _text(json.dumps(_AZURE_HUGE)), 1, 1, "OverflowError"),
]

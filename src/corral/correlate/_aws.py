"""AWS VPC Flow Logs: space-separated records, default v2 fields or a custom field list.

Field names and order follow the VPC user guide ("Flow log records"): the
default format is the 14 version-2 fields; a custom format lists any of the
fields up to version 5 in any order. Files delivered to S3 start with a header
line naming the fields, which is how a custom order is detected; CloudWatch
exports have no header, so pass ``fields`` for a custom format there.

Parsing is vectorised: lines are read in blocks by Arrow and split, cast and
validated by DuckDB, so a million-line file takes about a second on one core.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from corral.correlate._record import RECORD_SCHEMA, LogRecord, ReadStats, is_gzip, proto_name, to_int
from corral.correlate._registry import LineReader, register

V2_FIELDS = [
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
]
V3_FIELDS = ["vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr"]
V4_FIELDS = ["region", "az-id", "sublocation-type", "sublocation-id"]
V5_FIELDS = ["pkt-src-aws-service", "pkt-dst-aws-service", "flow-direction", "traffic-path"]
KNOWN_FIELDS = frozenset(V2_FIELDS + V3_FIELDS + V4_FIELDS + V5_FIELDS)
_STATUS = {"OK", "NODATA", "SKIPDATA", "-"}


def _is_header(tokens: list[str]) -> bool:
    return "srcaddr" in tokens and "dstaddr" in tokens and all(t in KNOWN_FIELDS for t in tokens)


@register
class AwsVpcFlowReader(LineReader):
    """AWS VPC Flow Logs, version 2 to 5 fields (text, as delivered to S3 or CloudWatch)."""

    name = "aws-vpc-flow"
    title = "AWS VPC Flow Logs"
    detect_order = 20

    def __init__(self, fields: list[str] | None = None) -> None:
        self.fields = list(fields) if fields else None

    def sniff(self, head: list[str]) -> bool:
        tokens = head[0].split(" ")
        if _is_header(tokens):
            return True
        return (
            len(tokens) == len(V2_FIELDS)
            and tokens[0].isdigit()
            and (tokens[2].startswith("eni-") or tokens[2] == "-")
            and tokens[12] in {"ACCEPT", "REJECT", "-"}
            and tokens[13] in _STATUS
        )

    # -- vectorised path -------------------------------------------------------------------

    def read(self, path: Path, stats: ReadStats) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._read_vectorised(path, stats)
        except (pa.ArrowInvalid, UnicodeDecodeError):
            # Bytes Arrow will not take as UTF-8: redo the file line by line.
            stats.records = stats.malformed = 0
            stats.samples.clear()
            yield from super().read(path, stats)

    def _read_vectorised(self, path: Path, stats: ReadStats) -> Iterator[pa.RecordBatch]:
        stream = pa.input_stream(str(path), compression="gzip" if is_gzip(path) else None)
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=["l"], block_size=16 << 20),
            parse_options=pacsv.ParseOptions(
                delimiter="\x1f", quote_char=False, escape_char=False, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={"l": pa.string()}, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
        con = duckdb.connect()
        con.execute("SET threads TO 1")
        fields = self.fields
        offset = 0
        sql: str | None = None
        for batch in reader:
            lines = batch.column(0)
            n = len(lines)
            start_line = 0
            if offset == 0 and n:
                tokens = str(lines[0]).strip().split(" ")
                if _is_header(tokens):
                    fields = tokens
                    start_line = 1
            if sql is None:
                sql = _batch_sql(fields or V2_FIELDS, str(path))
            chunk = pa.table(
                {
                    "l": lines.slice(start_line),
                    "n": pa.array(range(offset + 1 + start_line, offset + n + 1), pa.int64()),
                }
            )
            con.register("chunk", chunk)
            offset += n
            out = con.sql(sql).to_arrow_table()
            good = out.filter(pc.invert(out.column("bad")))
            bad = out.filter(out.column("bad"))
            for i in range(bad.num_rows):
                if len(stats.samples) >= stats.max_samples:
                    stats.malformed += bad.num_rows - i
                    break
                stats.bad(
                    bad.column("line")[i].as_py(), bad.column("raw")[i].as_py(), "bad field count or value"
                )
            good = good.filter(pc.invert(good.column("skip")))
            if good.num_rows:
                table = good.select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)
                stats.records += table.num_rows
                yield from table.to_batches()

    # -- line path (fallback and reference) ---------------------------------------------------

    def new_state(self) -> dict[str, Any]:
        return {"fields": self.fields}

    def parse_line(self, text: str, line: int, src: str, state: dict[str, Any]) -> Iterable[LogRecord]:
        tokens = text.strip().split(" ")
        if state["fields"] is None:
            if _is_header(tokens):
                state["fields"] = tokens
                return []
            state["fields"] = V2_FIELDS
        fields: list[str] = state["fields"]
        if len(tokens) != len(fields):
            raise ValueError(f"{len(tokens)} fields, expected {len(fields)}")
        v = dict(zip(fields, tokens, strict=True))
        if v.get("log-status") in {"NODATA", "SKIPDATA"}:
            return []
        src_ip = _nz(v.get("pkt-srcaddr")) or _nz(v.get("srcaddr"))
        dst_ip = _nz(v.get("pkt-dstaddr")) or _nz(v.get("dstaddr"))
        if not src_ip or not dst_ip:
            raise ValueError("no source or destination address")
        start, end = to_int(v.get("start")), to_int(v.get("end"))
        return [
            LogRecord(
                file=src,
                line=line,
                format=self.name,
                start=float(start) if start is not None else None,
                end=float(end) if end is not None else None,
                src_ip=src_ip,
                src_port=to_int(v.get("srcport")),
                dst_ip=dst_ip,
                dst_port=to_int(v.get("dstport")),
                proto=proto_name(v.get("protocol")),
                action={"ACCEPT": "accept", "REJECT": "deny"}.get(v.get("action", "")),
                bytes=to_int(v.get("bytes")),
                packets=to_int(v.get("packets")),
                reporter=_nz(v.get("instance-id")) or _nz(v.get("interface-id")),
                direction={"ingress": "in", "egress": "out"}.get(v.get("flow-direction", "")),
                detail=_account(v.get("account-id")),
            )
        ]


def _nz(v: str | None) -> str | None:
    return None if v in (None, "", "-") else v


def _account(v: str | None) -> str | None:
    return f"account={v}" if _nz(v) else None


def _batch_sql(fields: list[str], src: str) -> str:
    """One query that splits, casts and validates a block of lines (1-based list indexes)."""
    idx = {name: i + 1 for i, name in enumerate(fields)}

    def f(name: str) -> str:
        return f"NULLIF(f[{idx[name]}], '-')" if name in idx else "NULL"

    def num(name: str, typ: str) -> str:
        return f"TRY_CAST({f(name)} AS {typ})"

    def bad_num(name: str, typ: str) -> str:
        return f"({f(name)} IS NOT NULL AND {num(name, typ)} IS NULL)" if name in idx else "false"

    src_ip = f"COALESCE({f('pkt-srcaddr')}, {f('srcaddr')})"
    dst_ip = f"COALESCE({f('pkt-dstaddr')}, {f('dstaddr')})"
    status = f("log-status")
    checks = " OR ".join(
        [f"len(f) <> {len(fields)}"]
        + [bad_num(n, "BIGINT") for n in ("srcport", "dstport", "packets", "bytes", "start", "end")]
    )
    src_lit = src.replace("'", "''")
    return f"""
    WITH s AS (SELECT n, l, string_split(trim(l), ' ') AS f FROM chunk WHERE trim(l) <> '')
    SELECT
      n AS line, l AS raw,
      ({checks}) OR (COALESCE({status}, 'OK') = 'OK' AND ({src_ip} IS NULL OR {dst_ip} IS NULL)) AS bad,
      COALESCE({status} IN ('NODATA', 'SKIPDATA'), false) AS skip,
      '{src_lit}' AS file, 'aws-vpc-flow' AS format, 'flow' AS kind,
      CAST({num("start", "BIGINT")} AS DOUBLE) AS start, CAST({num("end", "BIGINT")} AS DOUBLE) AS "end",
      {src_ip} AS src_ip, {num("srcport", "BIGINT")} AS src_port,
      {dst_ip} AS dst_ip, {num("dstport", "BIGINT")} AS dst_port,
      CASE {f("protocol")} WHEN '6' THEN 'tcp' WHEN '17' THEN 'udp' WHEN '1' THEN 'icmp'
        WHEN '58' THEN 'icmpv6' ELSE {f("protocol")} END AS proto,
      CASE {f("action")} WHEN 'ACCEPT' THEN 'accept' WHEN 'REJECT' THEN 'deny' END AS action,
      {num("bytes", "BIGINT")} AS bytes, {num("packets", "BIGINT")} AS packets,
      COALESCE({f("instance-id")}, {f("interface-id")}) AS reporter,
      NULL AS signature, NULL AS severity,
      CASE {f("flow-direction")} WHEN 'ingress' THEN 'in' WHEN 'egress' THEN 'out' END AS direction,
      NULL AS reply_src_ip, NULL AS reply_src_port, NULL AS reply_dst_ip, NULL AS reply_dst_port,
      'account=' || {f("account-id")} AS detail, NULL AS workload
    FROM s
    """

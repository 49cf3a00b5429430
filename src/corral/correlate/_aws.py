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

import codecs
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from corral.correlate._lines import ByteSource, head_lines, iter_lines
from corral.correlate._record import MAX_EPOCH_S, RECORD_SCHEMA, LogRecord, ReadStats, proto_name, to_int
from corral.correlate._registry import Batcher, LineReader, _LineParser, feed_lines, register
from corral.errors import InputError

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
        head = head_lines(path, 1)
        tokens = head[0].split(" ") if head else []
        header = _is_header(tokens)
        fields = tokens if header else (self.fields or V2_FIELDS)
        if len(set(fields)) != len(fields):
            raise InputError(f"{path}:1: repeated field names in {fields}")
        progress = [1]  # the first line the vectorised path has not yet yielded
        try:
            yield from self._read_vectorised(path, stats, fields, header, progress)
        except (pa.ArrowInvalid, UnicodeDecodeError, OSError):
            # Bytes Arrow will not take (not UTF-8, a line longer than a block, a broken stream):
            # go on line by line from the first line not yet yielded.
            parser = _LineParser(self, str(path))
            parser.state["fields"] = fields
            lines = (
                (n, t) for n, t in iter_lines(path, stats) if n >= progress[0] and not (header and n == 1)
            )
            yield from feed_lines(parser, lines, Batcher(stats))

    def _read_vectorised(
        self, path: Path, stats: ReadStats, fields: list[str], header: bool, progress: list[int]
    ) -> Iterator[pa.RecordBatch]:
        # Rows with the wrong field count: the handler sees them with their physical line number.
        skipped: list[tuple[int, str]] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            skipped.append((row.number or 0, row.text))
            return "skip"

        src = ByteSource(path)  # gunzips with the bomb and truncation checks; Arrow reads through it
        readable = _Readable(src)
        reader = pacsv.open_csv(
            pa.PythonFile(readable, mode="r"),
            read_options=pacsv.ReadOptions(
                column_names=fields, skip_rows=1 if header else 0, use_threads=False, block_size=16 << 20
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=" ",
                quote_char=False,
                escape_char=False,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(fields, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        con = duckdb.connect()
        con.execute("SET threads TO 1")
        sql = _batch_sql(fields, str(path))
        next_line = 2 if header else 1
        progress[0] = next_line
        reported = 0
        for batch in reader:
            if readable.refused is not None:
                src.close()
                raise pa.ArrowInvalid(readable.refused)  # the line path goes on from progress[0]
            line_numbers, next_line = _line_numbers(batch.num_rows, next_line, skipped, reported)
            for number, text in skipped[reported:]:
                if number < next_line and text.strip():
                    stats.bad(number, text, f"{len(text.split(' '))} fields, expected {len(fields)}")
            reported = sum(1 for number, _ in skipped if number < next_line)
            chunk = pa.Table.from_batches([batch]).append_column("n", line_numbers)
            con.register("chunk", chunk)
            out = con.sql(sql).to_arrow_table()
            bad = out.filter(out.column("bad"))
            for i in range(bad.num_rows):
                if len(stats.samples) >= stats.max_samples:
                    stats.malformed += bad.num_rows - i
                    stats.reasons["bad field value"] = (
                        stats.reasons.get("bad field value", 0) + bad.num_rows - i
                    )
                    break
                stats.bad(bad.column("line")[i].as_py(), bad.column("raw")[i].as_py(), "bad field value")
            stats.ignored += int(pc.sum(out.column("skip")).as_py() or 0)
            good = out.filter(pc.invert(pc.or_(out.column("bad"), out.column("skip"))))
            progress[0] = next_line
            if good.num_rows:
                table = good.select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)
                stats.records += table.num_rows
                yield from table.to_batches()
        if readable.refused is not None:
            src.close()
            raise pa.ArrowInvalid(readable.refused)
        for number, text in skipped[reported:]:
            if text.strip():
                stats.bad(number, text, f"{len(text.split(' '))} fields, expected {len(fields)}")
        src.close()
        if src.error is not None:
            stats.bad(next_line, "", src.error)

    # -- line path (fallback and reference) ---------------------------------------------------

    def new_state(self) -> dict[str, Any]:
        return {"fields": self.fields}

    def parser(self, src: str) -> _AwsParser:
        return _AwsParser(self, src)

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
            return []  # counted as ignored: the interface had no traffic, or records were lost
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


def _line_numbers(n: int, first: int, skipped: list[tuple[int, str]], done: int) -> tuple[pa.Array, int]:
    """Physical line numbers of ``n`` parsed rows from ``first`` on, stepping over skipped lines."""
    parts: list[pa.Array] = []
    cur, left = first, n
    for number, _ in skipped[done:]:
        if left == 0:
            break
        if number < cur:
            continue
        take = min(left, number - cur)
        if take:
            parts.append(pa.array(range(cur, cur + take), pa.int64()))
            left -= take
            cur += take
        if cur == number:
            cur += 1  # step over the skipped line
    if left:
        parts.append(pa.array(range(cur, cur + left), pa.int64()))
        cur += left
    return pa.concat_arrays(parts) if parts else pa.array([], pa.int64()), cur


def _batch_sql(fields: list[str], src: str) -> str:
    """One query that casts and validates a block of rows already split into fields.

    Each text field is cast once; the raw line is rebuilt only for rows that are bad.
    """
    present = set(fields)
    numeric = [n for n in ("srcport", "dstport", "packets", "bytes", "start", "end") if n in present]

    def f(name: str) -> str:
        return f"NULLIF(\"{name}\", '-')" if name in present else "NULL"

    def num(name: str) -> str:
        return f"_{name}" if name in present else "NULL"

    casts = ", ".join(f"TRY_CAST({f(n)} AS BIGINT) AS _{n}" for n in numeric) or "NULL AS _none"
    checks = " OR ".join(f"({f(n)} IS NOT NULL AND _{n} IS NULL)" for n in numeric) or "false"
    # The ranges ``check_record`` enforces on the line path.
    limits = {"srcport": 65535, "dstport": 65535, "start": int(MAX_EPOCH_S), "end": int(MAX_EPOCH_S)}
    ranges = [f"_{n} NOT BETWEEN 0 AND {limits.get(n, (1 << 63) - 1)}" for n in numeric]
    if "start" in present and "end" in present:
        ranges.append("_end < _start")
    ranges += [
        f"length({f(a)}) > 255" for a in ("srcaddr", "dstaddr", "pkt-srcaddr", "pkt-dstaddr") if a in present
    ]
    checks += "".join(f" OR coalesce({r}, false)" for r in ranges)
    # An empty field is a doubled or edge space: the line path (which strips) finds too few fields.
    checks += "".join(f" OR \"{name}\" = ''" for name in fields)
    src_ip = f"COALESCE({f('pkt-srcaddr')}, {f('srcaddr')})"
    dst_ip = f"COALESCE({f('pkt-dstaddr')}, {f('dstaddr')})"
    status = f("log-status")
    raw = " || ' ' || ".join(f'"{name}"' for name in fields)
    all_empty = " AND ".join(f"\"{name}\" = ''" for name in fields)
    src_lit = src.replace("'", "''")
    return f"""
    WITH c AS (SELECT *, {casts} FROM chunk WHERE NOT ({all_empty})),
    v AS (
      SELECT *, ({checks})
             OR (COALESCE({status}, 'OK') = 'OK' AND ({src_ip} IS NULL OR {dst_ip} IS NULL)) AS bad
      FROM c
    )
    SELECT
      n AS line, CASE WHEN bad THEN {raw} END AS raw, bad,
      COALESCE({status} IN ('NODATA', 'SKIPDATA'), false) AS skip,
      '{src_lit}' AS file, 'aws-vpc-flow' AS format, 'flow' AS kind,
      CAST({num("start")} AS DOUBLE) AS start, CAST({num("end")} AS DOUBLE) AS "end",
      {src_ip} AS src_ip, {num("srcport")} AS src_port,
      {dst_ip} AS dst_ip, {num("dstport")} AS dst_port,
      CASE {f("protocol")} WHEN '6' THEN 'tcp' WHEN '17' THEN 'udp' WHEN '1' THEN 'icmp'
        WHEN '58' THEN 'icmpv6' ELSE {f("protocol")} END AS proto,
      CASE {f("action")} WHEN 'ACCEPT' THEN 'accept' WHEN 'REJECT' THEN 'deny' END AS action,
      {num("bytes")} AS bytes, {num("packets")} AS packets,
      COALESCE({f("instance-id")}, {f("interface-id")}) AS reporter,
      NULL AS signature, NULL AS severity,
      CASE {f("flow-direction")} WHEN 'ingress' THEN 'in' WHEN 'egress' THEN 'out' END AS direction,
      NULL AS reply_src_ip, NULL AS reply_src_port, NULL AS reply_dst_ip, NULL AS reply_dst_port,
      'account=' || {f("account-id")} AS detail, NULL AS workload, NULL AS flow_id
    FROM v
    """


class _Readable(io.RawIOBase):
    """A ``ByteSource`` as a raw binary file for Arrow, which stops (``refused``) on bytes it misreads.

    Arrow's CSV parser ends a line at a bare ``\r`` (the line path does not) and
    cannot report an invalid row that is not UTF-8; on either, the vectorised
    path stops and the line path takes over where it stopped.
    """

    def __init__(self, src: ByteSource) -> None:
        self.src = src
        self.refused: str | None = None
        self._utf8 = codecs.getincrementaldecoder("utf-8")()

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.refused is not None:
            return 0
        data = self.src.read(len(b))
        try:
            self._utf8.decode(data)
        except UnicodeDecodeError:
            self.refused = "not UTF-8"
            return 0
        if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
            self.refused = "carriage return inside a line"
            return 0
        n = len(data)
        b[:n] = data
        return n


class _AwsParser(_LineParser):
    """The line parser, with whole blocks of new lines parsed the vectorised way (``Watcher``)."""

    def __init__(self, reader: AwsVpcFlowReader, src: str) -> None:
        super().__init__(reader, src)
        self._con: duckdb.DuckDBPyConnection | None = None

    def parse_block(self, lines: list[tuple[int, str]], stats: ReadStats) -> pa.Table | None:
        if any("srcaddr" in t or "\r" in t for _, t in lines):
            return None  # a header (a new file) or a carriage return: one by one
        fields: list[str] = self.state["fields"] or V2_FIELDS
        self.state["fields"] = fields
        bad_rows: list[int] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            bad_rows.append((row.number or 1) - 1)
            return "skip"

        data = "\n".join(t for _, t in lines).encode()
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=fields, use_threads=False, block_size=len(data) + 1),
            parse_options=pacsv.ParseOptions(
                delimiter=" ",
                quote_char=False,
                escape_char=False,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(fields, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        skipped = set(bad_rows)
        for i in bad_rows:
            n, text = lines[i]
            stats.bad(n, text, f"{len(text.split(' '))} fields, expected {len(fields)}")
        numbers = pa.array([n for i, (n, _) in enumerate(lines) if i not in skipped], pa.int64())
        if self._con is None:
            self._con = duckdb.connect()
            self._con.execute("SET threads TO 1")
        self._con.register("chunk", table.append_column("n", numbers))
        out = self._con.sql(_batch_sql(fields, self.src)).to_arrow_table()
        bad = out.filter(out.column("bad"))
        for line, raw in zip(bad.column("line").to_pylist(), bad.column("raw").to_pylist(), strict=True):
            stats.bad(line, raw, "bad field value")
        stats.ignored += int(pc.sum(out.column("skip")).as_py() or 0)
        good = out.filter(pc.invert(pc.or_(out.column("bad"), out.column("skip"))))
        return good.select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)

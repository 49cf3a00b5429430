"""Attribution: which tool calls can have caused each log record, strongest evidence first.

Methods, in order of strength (a record takes the strongest that matches):

1. ``egress_5tuple``: the record's 5-tuple is one Corral's egress proxy used
   for a call (exact; time only guards against port reuse).
2. ``conntrack_nat``: a conntrack entry maps the record's node address and port
   back to a sandbox address; that sandbox's calls at that time.
3. ``sandbox_ip_time``: the record's own address is a sandbox address.
4. ``workload_time``: the log names the container/pod, which is a sandbox id.
5. ``node_time``: only the node address matches; every call running on the
   node within the clock-skew window is a candidate.

All joins run in DuckDB. Interval joins are hash joins on (address, time
bucket): each call is spread over the buckets its window can touch, each record
looks up the bucket of its start, and the exact overlap is checked after.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

METHODS: dict[str, tuple[int, float]] = {
    # name: (rank, confidence when exactly one candidate)
    "egress_5tuple": (1, 1.0),
    "conntrack_nat": (2, 0.95),
    "sandbox_ip_time": (3, 0.9),
    "workload_time": (4, 0.85),
    "node_time": (5, 0.6),
}
MAX_CANDIDATES = 50
# Longest record window the interval join spreads calls over; longer records match on their start.
MAX_SPAN_S = 3600.0
# Slack around an egress event or conntrack entry when matching a tuple (ports are reused slowly).
TUPLE_SLACK_S = 30.0

CALL_SCHEMA = pa.schema(
    [
        ("cid", pa.int64()),
        ("tool_call_id", pa.string()),
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("episode_id", pa.string()),
        ("turn", pa.int64()),
        ("sandbox_id", pa.string()),
        ("host", pa.string()),
        ("sandbox_ip", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("command", pa.string()),
    ]
)
EGRESS_SCHEMA = pa.schema(
    [
        ("tool_call_id", pa.string()),
        ("time", pa.float64()),
        ("src_ip", pa.string()),
        ("src_port", pa.int64()),
        ("dst_ip", pa.string()),
        ("dst_port", pa.int64()),
        ("proto", pa.string()),
    ]
)


@dataclass(frozen=True)
class AttributionTables:
    """Per-record attribution (``rid`` = row of the records table), and the calls table."""

    by_record: pa.Table
    calls: pa.Table


def attribute(
    records: pa.Table, calls: pa.Table, egress: pa.Table, skew_s: float, con: duckdb.DuckDBPyConnection
) -> pa.Table:
    """One row per attributed record: rid, method, confidence, candidates and what they agree on."""
    con.register("recs_in", records)
    con.register("calls", calls)
    con.register("egress_in", egress)
    con.execute("CREATE OR REPLACE TEMP TABLE recs AS SELECT row_number() OVER () - 1 AS rid, * FROM recs_in")
    span = con.execute(
        'SELECT coalesce(max(least(coalesce("end", start) - start, ?)), 0) FROM recs WHERE start IS NOT NULL',
        [MAX_SPAN_S],
    ).fetchone()
    max_span = float(span[0]) if span else 0.0
    width = max(30.0, (max_span + 2 * skew_s) / 2)
    sk = float(skew_s)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE sides AS
        SELECT rid, 0 AS side, src_ip AS lip, src_port AS lport, dst_ip AS rip, dst_port AS rport, proto,
               start AS t0, coalesce("end", start) AS t1, workload
        FROM recs
        UNION ALL
        SELECT rid, 1, dst_ip, dst_port, src_ip, src_port, proto, start, coalesce("end", start), NULL
        FROM recs;

        CREATE OR REPLACE TEMP TABLE egress AS
        SELECT c.cid, e.* FROM egress_in e JOIN calls c USING (tool_call_id);

        CREATE OR REPLACE TEMP TABLE nat AS
        SELECT rid AS nrid, src_ip AS in_ip, reply_dst_ip AS out_ip, reply_dst_port AS out_port,
               reply_src_ip AS r_ip, reply_src_port AS r_port, proto, start AS t
        FROM recs
        WHERE kind = 'conntrack' AND reply_dst_ip IS NOT NULL
          AND (reply_dst_ip <> src_ip OR reply_dst_port IS DISTINCT FROM src_port);

        -- Calls spread over the time buckets a record starting in them could overlap.
        CREATE OR REPLACE TEMP TABLE call_buckets AS
        SELECT cid, sandbox_ip, host, sandbox_id, start, "end",
               unnest(range(CAST(floor((start - {sk} - {max_span}) / {width}) AS BIGINT),
                            CAST(floor(("end" + {sk}) / {width}) AS BIGINT) + 1)) AS b
        FROM calls;

        CREATE OR REPLACE TEMP TABLE cand AS
        SELECT s.rid, s.side, e.cid, 1 AS rank FROM sides s
          JOIN egress e ON s.lip = e.src_ip AND s.lport = e.src_port
                       AND s.rip = e.dst_ip AND s.rport = e.dst_port
          WHERE s.t0 IS NULL
             OR e.time BETWEEN s.t0 - {sk} - {TUPLE_SLACK_S} AND s.t1 + {sk} + {TUPLE_SLACK_S}
        UNION ALL
        SELECT m.rid, m.side, cb.cid, 2 FROM (
            SELECT s.rid, s.side, n.in_ip, n.out_ip, coalesce(n.t, s.t0) AS t FROM sides s
            JOIN nat n ON s.lip = n.out_ip AND s.lport = n.out_port AND s.rip = n.r_ip AND s.rport = n.r_port
              AND (s.proto IS NULL OR n.proto IS NULL OR s.proto = n.proto) AND s.rid <> n.nrid
            WHERE n.t IS NULL OR s.t0 IS NULL
               OR n.t BETWEEN s.t0 - {sk} - {TUPLE_SLACK_S} AND s.t1 + {sk} + {TUPLE_SLACK_S}
          ) m
          JOIN call_buckets cb ON cb.sandbox_ip = m.in_ip AND cb.b = CAST(floor(m.t / {width}) AS BIGINT)
          -- Sandbox addresses may repeat across nodes: the NAT address names the node.
          WHERE m.t BETWEEN cb.start - {sk} AND cb."end" + {sk} AND (cb.host IS NULL OR cb.host = m.out_ip)
        UNION ALL
        SELECT s.rid, s.side, cb.cid, 3 FROM sides s
          JOIN call_buckets cb ON cb.sandbox_ip = s.lip AND cb.b = CAST(floor(s.t0 / {width}) AS BIGINT)
          WHERE s.t0 <= cb."end" + {sk} AND s.t1 >= cb.start - {sk}
        UNION ALL
        SELECT s.rid, s.side, cb.cid, 4 FROM sides s
          JOIN call_buckets cb ON cb.sandbox_id = s.workload AND cb.b = CAST(floor(s.t0 / {width}) AS BIGINT)
          WHERE s.t0 <= cb."end" + {sk} AND s.t1 >= cb.start - {sk}
        UNION ALL
        SELECT s.rid, s.side, cb.cid, 5 FROM sides s
          JOIN call_buckets cb ON cb.host = s.lip AND cb.b = CAST(floor(s.t0 / {width}) AS BIGINT)
          WHERE s.t0 <= cb."end" + {sk} AND s.t1 >= cb.start - {sk};
        """
    )
    ranks = " ".join(f"WHEN {r} THEN '{name}'" for name, (r, _) in METHODS.items())
    confs = " ".join(f"WHEN {r} THEN {c}" for _, (r, c) in METHODS.items())
    return con.sql(
        f"""
        WITH pairs AS (
          SELECT rid, cid, min(rank) AS r, min(side) AS sd FROM cand GROUP BY rid, cid
        ), best AS (
          SELECT * FROM pairs QUALIFY r = min(r) OVER (PARTITION BY rid)
        ), j AS (
          SELECT b.rid, b.r AS rank, b.sd AS side, c.*,
                 coalesce(c.run_id, '') || chr(31) || coalesce(c.episode_id, '') AS ep
          FROM best b JOIN calls c USING (cid)
        )
        SELECT rid,
          CASE min(rank) {ranks} END AS method,
          (CASE min(rank) {confs} END) / count(*) AS confidence,
          count(*) AS candidate_count,
          count(DISTINCT ep) AS episode_count,
          min(side) AS local_side,
          list(DISTINCT ep ORDER BY ep)[1:{MAX_CANDIDATES}] AS episodes,
          list(tool_call_id ORDER BY start, tool_call_id)[1:{MAX_CANDIDATES}] AS candidates,
          CASE WHEN count(*) = 1 THEN min(tool_call_id) END AS tool_call_id,
          CASE WHEN count(DISTINCT ep) = 1 THEN min(run_id) END AS run_id,
          CASE WHEN count(DISTINCT ep) = 1 THEN min(episode_id) END AS episode_id,
          CASE WHEN count(DISTINCT step) = 1 AND count(step) = count(*) THEN min(step) END AS step,
          CASE WHEN count(*) = 1 THEN min(turn) END AS turn
        FROM j GROUP BY rid
        """
    ).to_arrow_table()


def calls_table(calls: list[object]) -> pa.Table:
    """The calls as an Arrow table with a dense ``cid``."""
    from corral.events import TraceRecord

    cols: dict[str, list[object]] = {name: [] for name in CALL_SCHEMA.names}
    for i, c in enumerate(calls):
        assert isinstance(c, TraceRecord)
        cols["cid"].append(i)
        for name in CALL_SCHEMA.names[1:]:
            cols[name].append(getattr(c, name))
    return pa.table(cols, schema=CALL_SCHEMA)

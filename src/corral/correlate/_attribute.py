"""Attribution: which tool calls can have caused each log record, strongest evidence first.

Methods, in order of strength (a record takes the strongest that matches):

1. ``egress_5tuple``: the record's 5-tuple is one Corral's egress proxy used
   for a call (exact; time only guards against port reuse).
2. ``conntrack_nat``: a conntrack entry maps the record's node address and port
   back to a sandbox address; that sandbox's calls at that time.
3. ``sandbox_ip_time``: the record's own address is a sandbox address.
4. ``workload_time``: the log names the container/pod, which is a sandbox id.
5. ``node_time_command``: the node address and time match, and the call's own
   command names the record's remote address (an agent typing the address it dials).
6. ``node_time``: only the node address matches; every call running on the
   node within the clock-skew window is a candidate.

All joins run in DuckDB. Interval joins are hash joins on (address, time
bucket): each call is spread over the buckets its window can touch, each record
looks up the bucket of its start, and the exact overlap is checked after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from corral.events import TraceRecord

METHODS: dict[str, tuple[int, float]] = {
    # name: (rank, confidence when exactly one candidate)
    "egress_5tuple": (1, 1.0),
    "conntrack_nat": (2, 0.95),
    "sandbox_ip_time": (3, 0.9),
    "workload_time": (4, 0.85),
    "node_time_command": (5, 0.8),
    "node_time": (6, 0.6),
}
MAX_CANDIDATES = 50
# Longest record window the interval join spreads calls over; longer records match on their start.
MAX_SPAN_S = 3600.0
# Slack around an egress event or conntrack entry when matching a tuple (ports are reused slowly).
TUPLE_SLACK_S = 30.0

CALL_SCHEMA = pa.schema(
    [
        ("cid", pa.int64()),
        ("eid", pa.int64()),  # dense id of (run_id, episode_id)
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


def attribute(
    records: pa.Table, calls: pa.Table, egress: pa.Table, skew_s: float, con: duckdb.DuckDBPyConnection
) -> pa.Table:
    """One row per attributed record: rid, method, confidence, candidates and what they agree on."""
    # Only the columns the joins need, with the row index as the record id (no copy of the rest).
    cols = ["src_ip", "src_port", "dst_ip", "dst_port", "proto", "start", "end", "kind", "workload"]
    cols += ["reply_src_ip", "reply_src_port", "reply_dst_ip", "reply_dst_port"]
    recs = records.select(cols).append_column("rid", pa.array(range(records.num_rows), pa.int64()))
    con.register("recs", recs)
    con.register("calls", calls)
    con.register("egress_in", egress)
    span = con.execute(
        'SELECT coalesce(max(least(coalesce("end", start) - start, ?)), 0) FROM recs WHERE start IS NOT NULL',
        [MAX_SPAN_S],
    ).fetchone()
    max_span = float(span[0]) if span else 0.0
    width = max(30.0, (max_span + 2 * skew_s) / 2)
    sk = float(skew_s)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE egress AS
        SELECT c.cid, e.* FROM egress_in e JOIN calls c USING (tool_call_id);

        CREATE OR REPLACE TEMP TABLE nat AS
        SELECT rid AS nrid, src_ip AS in_ip, reply_dst_ip AS out_ip, reply_dst_port AS out_port,
               reply_src_ip AS r_ip, reply_src_port AS r_port, proto, start AS t
        FROM recs
        WHERE kind = 'conntrack' AND reply_dst_ip IS NOT NULL
          AND (reply_dst_ip <> src_ip OR reply_dst_port IS DISTINCT FROM src_port);

        -- Each record from both ends, keeping the ends whose address (or workload) the traces know.
        CREATE OR REPLACE TEMP TABLE keys AS
        SELECT DISTINCT ip FROM (
          SELECT sandbox_ip AS ip FROM calls UNION ALL SELECT host FROM calls
          UNION ALL SELECT src_ip FROM egress UNION ALL SELECT out_ip FROM nat
        ) WHERE ip IS NOT NULL;
        CREATE OR REPLACE TEMP TABLE sides AS
        SELECT rid, 0 AS side, src_ip AS lip, src_port AS lport, dst_ip AS rip, dst_port AS rport, proto,
               start AS t0, coalesce("end", start) AS t1, workload
        FROM recs WHERE src_ip IN (SELECT ip FROM keys)
           OR workload IN (SELECT sandbox_id FROM calls WHERE sandbox_id IS NOT NULL)
        UNION ALL
        SELECT rid, 1, dst_ip, dst_port, src_ip, src_port, proto, start, coalesce("end", start), NULL
        FROM recs WHERE dst_ip IN (SELECT ip FROM keys);

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
        SELECT s.rid, s.side, cb.cid, 6 FROM sides s
          JOIN call_buckets cb ON cb.host = s.lip AND cb.b = CAST(floor(s.t0 / {width}) AS BIGINT)
          WHERE s.t0 <= cb."end" + {sk} AND s.t1 >= cb.start - {sk};

        -- Node-time candidates whose command text names the remote address, as a whole address.
        INSERT INTO cand
        SELECT n.rid, n.side, n.cid, 5 FROM cand n
          JOIN sides s ON s.rid = n.rid AND s.side = n.side
          JOIN calls c ON c.cid = n.cid
          WHERE n.rank = 6 AND s.rip IS NOT NULL
            AND regexp_matches(
              c.command, '(^|[^0-9A-Za-z.:])' || replace(s.rip, '.', '\\.') || '($|[^0-9A-Za-z:]|:[0-9])'
            );
        """
    )
    ranks = " ".join(f"WHEN {r} THEN '{name}'" for name, (r, _) in METHODS.items())
    confs = " ".join(f"WHEN {r} THEN {c}" for _, (r, c) in METHODS.items())
    # cids are numbered in start order, so the candidate list sorts on integers.
    return con.sql(
        f"""
        WITH pairs AS (
          SELECT rid, cid, min(rank) AS r, min(side) AS sd FROM cand GROUP BY rid, cid
        ), best AS (
          SELECT * FROM pairs QUALIFY r = min(r) OVER (PARTITION BY rid)
        ), agg AS (
          SELECT rid, min(r) AS rank, count(*) AS n, min(sd) AS local_side,
                 list(cid ORDER BY cid)[1:{MAX_CANDIDATES}] AS candidate_cids, min(cid) AS cid0,
                 count(DISTINCT eid) AS ne, count(DISTINCT step) AS ns, count(step) AS cs, min(step) AS s0
          FROM best JOIN (SELECT cid, eid, step FROM calls) c USING (cid) GROUP BY rid
        )
        SELECT a.rid,
          CASE a.rank {ranks} END AS method,
          (CASE a.rank {confs} END) / a.n AS confidence,
          a.n AS candidate_count,
          a.ne AS episode_count,
          a.local_side,
          a.candidate_cids,
          CASE WHEN a.n = 1 THEN c.tool_call_id END AS tool_call_id,
          CASE WHEN a.ne = 1 THEN c.run_id END AS run_id,
          CASE WHEN a.ne = 1 THEN c.episode_id END AS episode_id,
          CASE WHEN a.ns = 1 AND a.cs = a.n THEN a.s0 END AS step,
          CASE WHEN a.n = 1 THEN c.turn END AS turn
        FROM agg a JOIN calls c ON c.cid = a.cid0
        """
    ).to_arrow_table()


def calls_table(calls: Sequence[TraceRecord]) -> pa.Table:
    """The calls as an Arrow table; ``cid`` numbers them in start order, ``eid`` their episodes."""
    order = sorted(range(len(calls)), key=lambda i: (calls[i].start, calls[i].tool_call_id))
    ordered = [calls[i] for i in order]
    episodes: dict[tuple[str | None, str | None], int] = {}
    cols: dict[str, list[Any]] = {
        "cid": list(range(len(ordered))),
        "eid": [episodes.setdefault((c.run_id, c.episode_id), len(episodes)) for c in ordered],
    }
    for name in CALL_SCHEMA.names[2:]:
        cols[name] = [getattr(c, name) for c in ordered]
    return pa.table(cols, schema=CALL_SCHEMA)

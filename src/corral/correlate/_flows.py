"""Flow continuations: a flow's later records belong to whatever its first record belongs to.

A miner or a tunnel that outlives its call keeps one connection open for
minutes; the flow log reports it every aggregation interval, long after the
call ended, with nothing but the node address and time to go on. Records are
chained into flows by an identifier the log gives a flow (conntrack's ``id``,
Suricata's ``flow_id``, Zeek's ``uid``, scoped to the file and sensor) or by
the 5-tuple (same protocol, addresses and ports, either direction) with no gap
longer than ``FLOW_IDLE_S``. A record with no attribution, only node-level
evidence, or only "one of the sandbox's earlier calls", takes the attribution of
the nearest earlier record of its flow that sandbox-level evidence attributed
(or of the flow's first such record).
"""

from __future__ import annotations

import duckdb

from corral.correlate._attribute import METHODS

# Longest silence inside one flow: AWS aggregates over at most 10 minutes, so a live
# flow reports at least that often; a longer gap may be a new flow reusing the tuple.
FLOW_IDLE_S = 900.0
_STRONG = METHODS["workload_time"][0]  # ranks up to this one name the sandbox
_NODE = METHODS["node_time_command"][0]  # ranks from this one only name the node


def continue_flows(con: duckdb.DuckDBPyConnection, idle_s: float = FLOW_IDLE_S) -> None:
    """Replace temp table ``att`` by ``att`` plus inherited rows (``via_rid`` names the flow's record)."""
    rank, conf = METHODS["flow_continuation"]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fk AS
        SELECT rid, hash('i', format, file, reporter, flow_id) AS k, 0 AS by_tuple,
               start AS t0, coalesce("end", start) AS t1
          FROM recs WHERE flow_id IS NOT NULL AND start IS NOT NULL
        UNION ALL
        SELECT rid, CASE WHEN src_ip < dst_ip OR (src_ip = dst_ip AND src_port <= dst_port)
                         THEN hash('t', proto, src_ip, src_port, dst_ip, dst_port)
                         ELSE hash('t', proto, dst_ip, dst_port, src_ip, src_port) END,
               1, start, coalesce("end", start)
          FROM recs
          WHERE src_port IS NOT NULL AND dst_port IS NOT NULL AND start IS NOT NULL
            AND proto IN ('tcp', 'udp', 'sctp');

        -- Only flows with both a record attributed to a sandbox and one that is not need chaining.
        -- Members: no attribution, node-only evidence, or "one of the sandbox's earlier calls".
        CREATE OR REPLACE TEMP TABLE fk2 AS
        SELECT *, coalesce(rank <= {_STRONG}, false) AND NOT member AS strong FROM (
          SELECT fk.*, a.rank,
                 a.rank IS NULL OR a.rank >= {_NODE}
                   OR (a.timing = 'after' AND a.candidate_count > 1) AS member
          FROM fk LEFT JOIN (SELECT rid, rank, timing, candidate_count FROM att) a USING (rid)
        );
        CREATE OR REPLACE TEMP TABLE fk3 AS
        SELECT * FROM fk2 SEMI JOIN (
          SELECT k FROM fk2 GROUP BY k HAVING bool_or(strong) AND bool_or(member)
        ) USING (k);

        CREATE OR REPLACE TEMP TABLE chained AS
        WITH g AS (
          SELECT *, CASE WHEN t0 - max(t1) OVER (PARTITION BY k ORDER BY t0, rid
                                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                          > {idle_s} THEN 1 ELSE 0 END AS brk
          FROM fk3
        ), ch AS (
          SELECT rid, k, by_tuple, t0, member, CASE WHEN strong THEN rid END AS anchor,
                 sum(brk) OVER (PARTITION BY k ORDER BY t0, rid ROWS UNBOUNDED PRECEDING) AS cn
          FROM g
        ), lk AS (
          SELECT rid, k, by_tuple, member,
                 coalesce(
                   last_value(anchor IGNORE NULLS) OVER (PARTITION BY k, cn ORDER BY t0, rid
                                                         ROWS UNBOUNDED PRECEDING),
                   first_value(anchor IGNORE NULLS) OVER (PARTITION BY k, cn ORDER BY t0, rid
                                                          ROWS BETWEEN UNBOUNDED PRECEDING
                                                          AND UNBOUNDED FOLLOWING)) AS via
          FROM ch
        )
        -- A record in two flows (by id and by tuple) follows its id's (the keys' hashes, which name
        -- the log file, would pick one at random).
        SELECT rid, arg_min(via, by_tuple) AS via FROM lk WHERE member AND via IS NOT NULL GROUP BY rid;

        CREATE OR REPLACE TEMP TABLE att AS
        SELECT a.* FROM att a ANTI JOIN chained USING (rid)
        UNION ALL BY NAME
        SELECT m.rid, {rank} AS rank, 'flow_continuation' AS method, a.confidence * {conf} AS confidence,
               a.candidate_count, a.episode_count,
               CASE WHEN r.src_ip = ar.src_ip AND r.src_port IS NOT DISTINCT FROM ar.src_port
                    THEN a.local_side ELSE 1 - a.local_side END AS local_side,
               a.candidate_cids, a.tool_call_id, a.run_id, a.episode_id, a.step, a.turn,
               NULL AS timing, NULL AS tie_break, 0 AS ruled_out,
               a.names_address, a.names_port, m.via AS via_rid, a.method AS via_method
        FROM chained m JOIN att a ON a.rid = m.via
          JOIN recs r ON r.rid = m.rid JOIN recs ar ON ar.rid = m.via;
        """
    )

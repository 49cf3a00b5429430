"""Attribution: which tool calls can have caused each log record, strongest evidence first.

Methods, in order of strength (a record takes the strongest that matches):

1. ``egress_5tuple``: the record's 5-tuple is one Corral's egress proxy used
   for a call (exact; time only guards against port reuse).
2. ``conntrack_nat``: a conntrack entry maps the record's node address and port
   back to a sandbox address; that sandbox's calls at that time.
3. ``sandbox_ip_time``: the record's own address is a sandbox address.
4. ``workload_time``: the log names the container/pod, which is a sandbox id.
5. ``flow_continuation``: a later record of a flow whose first record was
   attributed by 1-4 (same 5-tuple, conntrack id or Suricata ``flow_id``; see
   ``_flows``).
6. ``node_time_command``: the node address matches, and the call's own command
   names the record's remote address (an agent typing the address it dials).
7. ``node_time``: only the node address matches; every call running on the
   node within the clock-skew window is a candidate, and all are kept.

Sandbox-level evidence (2-4) also reaches calls that had already ended: a
process the sandbox left running (episode mode, or an escape) belongs to the
call that started it, so a record that comes after every call of the sandbox
that owned the address has that sandbox's earlier calls (within ``linger_s``)
as candidates. Among the candidates of the best method, tie-breaks apply in
order: a command that names only other ports for the destination is ruled out
(a flow to :22 is not the call whose command names :80); a command that names
the remote address beats one that does not; one that names the port beats one
that does not; a record inside a call's interval beats one that reaches it
only through the skew allowance, which beats a call that had ended. Node-only
evidence (7) keeps every candidate.

All joins run in DuckDB. Interval joins are hash joins on (address, time
bucket): each call is spread over the buckets its window can touch, each record
looks up the bucket of its start, and the exact overlap is checked after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from corral.correlate._cmdrefs import command_refs
from corral.events import TraceRecord

METHODS: dict[str, tuple[int, float]] = {
    # name: (rank, confidence when exactly one candidate)
    "egress_5tuple": (1, 1.0),
    "conntrack_nat": (2, 0.95),
    "sandbox_ip_time": (3, 0.9),
    "workload_time": (4, 0.85),
    "flow_continuation": (5, 0.95),  # times the confidence of the flow's first record
    "node_time_command": (6, 0.8),
    "node_time": (7, 0.6),
}
TIMINGS = {2: "inside", 1: "skew", 0: "after"}
MAX_CANDIDATES = 50
# Longest record window the interval join spreads calls over; longer records match on their start.
MAX_SPAN_S = 3600.0
# Slack around an egress event or conntrack entry when matching a tuple (ports are reused slowly).
TUPLE_SLACK_S = 30.0
# How long after a call ended a process it left running is still looked for.
LINGER_S = 3600.0
LINGER_FACTOR = 0.8  # confidence, when every remaining candidate had ended
TIE_FACTOR = 0.9  # confidence, when a tie-break chose among candidates

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
REFS_SCHEMA = pa.schema([("cid", pa.int64()), ("host", pa.string()), ("port", pa.int64())])
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
_REC_COLS = ["src_ip", "src_port", "dst_ip", "dst_port", "proto", "start", "end", "kind", "workload"]
_REC_COLS += ["reply_src_ip", "reply_src_port", "reply_dst_ip", "reply_dst_port", "detail"]
_REC_COLS += ["flow_id", "format", "file", "reporter"]


def attribute(
    records: pa.Table,
    calls: pa.Table,
    egress: pa.Table,
    skew_s: float,
    con: duckdb.DuckDBPyConnection,
    *,
    refs: pa.Table | None = None,
    linger_s: float = LINGER_S,
) -> None:
    """Fill the temp table ``att``: one row per attributed record (``rid`` = row index of ``records``).

    Columns: rid, rank, method, confidence, candidate_count, episode_count,
    local_side, candidate_cids, tool_call_id, run_id, episode_id, step, turn,
    timing, tie_break, ruled_out, names_address, names_port.
    """
    recs = records.select(_REC_COLS).append_column("rid", pa.array(range(records.num_rows), pa.int64()))
    con.register("recs", recs)
    con.register("calls", calls)
    con.register("egress_in", egress)
    con.register("refs", refs if refs is not None else refs_table(calls))
    span = con.execute(
        'SELECT coalesce(max(least(coalesce("end", start) - start, ?)), 0) FROM recs WHERE start IS NOT NULL',
        [MAX_SPAN_S],
    ).fetchone()
    max_span = float(span[0]) if span else 0.0
    width = max(30.0, (max_span + 2 * skew_s) / 2)
    con.execute(_candidates_sql(float(skew_s), max_span, width, float(linger_s)))
    con.execute(_choice_sql())


def _candidates_sql(sk: float, max_span: float, width: float, linger: float) -> str:
    slack = sk + TUPLE_SLACK_S
    return f"""
    CREATE OR REPLACE TEMP TABLE c AS
    SELECT *, coalesce(sandbox_id, '#' || eid) AS sbkey,
           row_number() OVER (PARTITION BY coalesce(sandbox_id, '#' || eid) ORDER BY start, cid) AS sq
    FROM calls;

    CREATE OR REPLACE TEMP TABLE egress AS
    SELECT c.cid, e.* FROM egress_in e JOIN c USING (tool_call_id);

    CREATE OR REPLACE TEMP TABLE nat AS
    SELECT rid AS nrid, src_ip AS in_ip, reply_dst_ip AS out_ip, reply_dst_port AS out_port,
           reply_src_ip AS r_ip, reply_src_port AS r_port, proto, start AS t
    FROM recs
    WHERE kind = 'conntrack' AND reply_dst_ip IS NOT NULL
      AND (reply_dst_ip <> src_ip OR reply_dst_port IS DISTINCT FROM src_port);

    -- Each record from both ends, keeping the ends whose address (or workload) the traces know.
    CREATE OR REPLACE TEMP TABLE keys AS
    SELECT DISTINCT ip FROM (
      SELECT sandbox_ip AS ip FROM c UNION ALL SELECT host FROM c
      UNION ALL SELECT src_ip FROM egress UNION ALL SELECT out_ip FROM nat
    ) WHERE ip IS NOT NULL;
    CREATE OR REPLACE TEMP TABLE sides AS
    SELECT rid, 0 AS side, src_ip AS lip, src_port AS lport, dst_ip AS rip, dst_port AS rport, proto,
           start AS t0, coalesce("end", start) AS t1, workload,
           CASE WHEN contains(detail, 'sni=') OR contains(detail, 'dns=') OR contains(detail, 'domain=')
                THEN nullif(lower(regexp_extract(detail, '(?:sni|dns|domain)=([^ ]+)', 1)), '') END AS rname
    FROM recs WHERE src_ip IN (SELECT ip FROM keys)
       OR workload IN (SELECT sandbox_id FROM c WHERE sandbox_id IS NOT NULL)
    UNION ALL
    SELECT rid, 1, dst_ip, dst_port, src_ip, src_port, proto, start, coalesce("end", start), NULL, NULL
    FROM recs WHERE dst_ip IN (SELECT ip FROM keys);

    -- Calls spread over the time buckets a record starting in them could overlap.
    CREATE OR REPLACE TEMP TABLE call_buckets AS
    SELECT cid, sandbox_ip, host, sandbox_id, start, "end",
           unnest(range(CAST(floor((start - {sk} - {max_span}) / {width}) AS BIGINT),
                        CAST(floor(("end" + {sk}) / {width}) AS BIGINT) + 1)) AS b
    FROM c;

    -- Conntrack NAT entries matched to the record's outside tuple: the sandbox address behind it.
    CREATE OR REPLACE TEMP TABLE natm AS
    SELECT s.rid, s.side, n.in_ip, n.out_ip, coalesce(n.t, s.t0) AS t FROM sides s
    JOIN nat n ON s.lip = n.out_ip AND s.lport = n.out_port AND s.rip = n.r_ip AND s.rport = n.r_port
      AND (s.proto IS NULL OR n.proto IS NULL OR s.proto = n.proto) AND s.rid <> n.nrid
    WHERE n.t IS NULL OR s.t0 IS NULL OR n.t BETWEEN s.t0 - {slack} AND s.t1 + {slack};

    -- rank, fit: 2 inside the call's interval, 1 only within the skew allowance, 0 after it ended.
    CREATE OR REPLACE TEMP TABLE cand AS
    SELECT s.rid, s.side, e.cid, 1 AS rank, 2 AS fit FROM sides s
      JOIN egress e ON s.lip = e.src_ip AND s.lport = e.src_port AND s.rip = e.dst_ip AND s.rport = e.dst_port
      WHERE s.t0 IS NULL OR e.time BETWEEN s.t0 - {slack} AND s.t1 + {slack}
    UNION ALL
    SELECT m.rid, m.side, cb.cid, 2, CASE WHEN m.t BETWEEN cb.start AND cb."end" THEN 2 ELSE 1 END
      FROM natm m
      JOIN call_buckets cb ON cb.sandbox_ip = m.in_ip AND cb.b = CAST(floor(m.t / {width}) AS BIGINT)
      -- Sandbox addresses may repeat across nodes: the NAT address names the node.
      WHERE m.t BETWEEN cb.start - {sk} AND cb."end" + {sk} AND (cb.host IS NULL OR cb.host = m.out_ip)
    UNION ALL
    SELECT s.rid, s.side, cb.cid, 3, CASE WHEN s.t0 <= cb."end" AND s.t1 >= cb.start THEN 2 ELSE 1 END
      FROM sides s
      JOIN call_buckets cb ON cb.sandbox_ip = s.lip AND cb.b = CAST(floor(s.t0 / {width}) AS BIGINT)
      WHERE s.t0 <= cb."end" + {sk} AND s.t1 >= cb.start - {sk}
    UNION ALL
    SELECT s.rid, s.side, cb.cid, 4, CASE WHEN s.t0 <= cb."end" AND s.t1 >= cb.start THEN 2 ELSE 1 END
      FROM sides s
      JOIN call_buckets cb ON cb.sandbox_id = s.workload AND cb.b = CAST(floor(s.t0 / {width}) AS BIGINT)
      WHERE s.t0 <= cb."end" + {sk} AND s.t1 >= cb.start - {sk}
    UNION ALL
    SELECT s.rid, s.side, cb.cid, 7, CASE WHEN s.t0 <= cb."end" AND s.t1 >= cb.start THEN 2 ELSE 1 END
      FROM sides s
      JOIN call_buckets cb ON cb.host = s.lip AND cb.b = CAST(floor(s.t0 / {width}) AS BIGINT)
      WHERE s.t0 <= cb."end" + {sk} AND s.t1 >= cb.start - {sk};

    -- After the call: the sandbox that held the address (its latest call started before the
    -- record) had no call running: its calls of the last {linger:g} s are the candidates.
    -- (Only records no call of the sandbox was running for: else the owner had not ended.)
    CREATE OR REPLACE TEMP TABLE addr_at AS
    SELECT * FROM (
      SELECT rid, side, 3 AS rank, lip AS k, t0 AS t FROM sides
        WHERE t0 IS NOT NULL AND lip IN (SELECT sandbox_ip FROM c WHERE sandbox_ip IS NOT NULL)
      UNION ALL
      SELECT rid, side, 2, in_ip || '@' || out_ip, t FROM natm WHERE t IS NOT NULL
      UNION ALL
      SELECT rid, side, 4, '%' || workload, t0 FROM sides WHERE t0 IS NOT NULL AND workload IS NOT NULL
    ) ANTI JOIN (SELECT DISTINCT rid FROM cand WHERE rank <= 4) USING (rid);
    CREATE OR REPLACE TEMP TABLE call_keys AS
    SELECT cid, sbkey, sq, start, "end", sandbox_ip AS k FROM c WHERE sandbox_ip IS NOT NULL
    UNION ALL
    SELECT cid, sbkey, sq, start, "end", sandbox_ip || '@' || host FROM c
      WHERE sandbox_ip IS NOT NULL AND host IS NOT NULL
    UNION ALL
    SELECT cid, sbkey, sq, start, "end", '%' || sandbox_id FROM c WHERE sandbox_id IS NOT NULL;
    CREATE OR REPLACE TEMP TABLE owner AS
    SELECT a.rid, a.side, a.rank, a.t, o.sbkey, o.sq AS hi
    FROM addr_at a ASOF JOIN call_keys o ON a.k = o.k AND a.t + {sk} >= o.start
    WHERE o."end" + {sk} < a.t AND a.t - o."end" <= {linger};
    CREATE OR REPLACE TEMP TABLE sb_calls AS SELECT cid, sbkey, sq, start FROM c;
    CREATE OR REPLACE TEMP TABLE owner_lo AS
    SELECT o.*, f.sq AS lo FROM owner o
    ASOF JOIN sb_calls f ON o.sbkey = f.sbkey AND o.t - {linger} <= f.start;
    INSERT INTO cand
    SELECT o.rid, o.side, c.cid, o.rank, 0 FROM (
        SELECT rid, side, rank, sbkey, unnest(range(lo, hi + 1)) AS sq FROM owner_lo WHERE lo <= hi
      ) o JOIN c ON c.sbkey = o.sbkey AND c.sq = o.sq;

    -- Calls whose command names the remote end (address, or the name a DNS/TLS record gives),
    -- running or ended within the linger window: on the node (6), or in the same sandbox after
    -- a newer call took over (2-4), where the tie-breaks let the command decide.
    CREATE OR REPLACE TEMP TABLE rsides AS
    SELECT rid, side, lip, workload, t0, t1, rip AS rk FROM sides WHERE rip IS NOT NULL AND t0 IS NOT NULL
    UNION ALL
    SELECT rid, side, lip, workload, t0, t1, rname FROM sides WHERE rname IS NOT NULL AND t0 IS NOT NULL;
    CREATE OR REPLACE TEMP TABLE named AS
    SELECT DISTINCT s.rid, s.side, s.lip, s.workload, s.t0, s.t1, c.cid, c.host, c.sandbox_ip, c.sandbox_id,
           c.start, c."end"
    FROM rsides s JOIN refs r ON r.host = s.rk JOIN c ON c.cid = r.cid
    WHERE c.start <= s.t1 + {sk} AND c."end" >= s.t0 - {linger};
    INSERT INTO cand
    SELECT rid, side, cid, 6, CASE WHEN t0 <= "end" AND t1 >= start THEN 2
                                   WHEN t0 <= "end" + {sk} AND t1 >= start - {sk} THEN 1 ELSE 0 END
      FROM named WHERE host = lip
    UNION ALL
    SELECT rid, side, cid, 3, 0 FROM named WHERE sandbox_ip = lip AND "end" + {sk} < t0
    UNION ALL
    SELECT rid, side, cid, 4, 0 FROM named WHERE sandbox_id = workload AND "end" + {sk} < t0
    UNION ALL
    SELECT m.rid, m.side, n.cid, 2, 0 FROM natm m
      JOIN named n ON n.rid = m.rid AND n.side = m.side AND n.sandbox_ip = m.in_ip AND n.host = m.out_ip
      WHERE n."end" + {sk} < m.t;
    """


def _choice_sql() -> str:
    """Best method per record, then the tie-breaks, then what the remaining candidates agree on."""
    ranks = " ".join(f"WHEN {r} THEN '{name}'" for name, (r, _) in METHODS.items())
    confs = " ".join(f"WHEN {r} THEN {c}" for _, (r, c) in METHODS.items())
    return f"""
    -- One row per (record, call): its best method, and at that method its best fit (one aggregate:
    -- rank * 10 + (2 - fit) orders by rank, then by fit downwards).
    CREATE OR REPLACE TEMP TABLE best AS
    SELECT rid, cid, k // 10 AS rank, 2 - k % 10 AS fit, side FROM (
      SELECT rid, cid, min(rank * 10 + 2 - fit) AS k, min(side) AS side FROM cand GROUP BY rid, cid
    ) QUALIFY k // 10 = min(k // 10) OVER (PARTITION BY rid);

    -- Tie-break key (only where several calls remain): port not contradicted, names the address,
    -- names the port, fit. Node-only evidence keeps every candidate (key 0).
    CREATE OR REPLACE TEMP TABLE keyed AS
    WITH ties AS (SELECT rid FROM best GROUP BY rid HAVING count(*) > 1),
    -- Only ties with a candidate whose command names anything need the command features.
    cmd_ties AS (SELECT DISTINCT b.rid FROM best b SEMI JOIN ties USING (rid)
                 WHERE b.cid IN (SELECT cid FROM refs)),
    feat AS (
      SELECT b.rid, b.cid, b.rank, b.fit, b.side, s.rport,
        coalesce(bool_or(r.host = s.rip OR r.host = s.rname), false) AS addr,
        coalesce(bool_or(r.port = s.rport AND (r.host IS NULL OR r.host = s.rip OR r.host = s.rname)),
                 false) AS p_ok,
        coalesce(bool_or(r.port IS NOT NULL AND (r.host IS NULL OR r.host = s.rip OR r.host = s.rname)),
                 false) AS p_any
      FROM best b SEMI JOIN cmd_ties USING (rid)
      JOIN sides s ON s.rid = b.rid AND s.side = b.side
      LEFT JOIN refs r ON r.cid = b.cid
      GROUP BY b.rid, b.cid, b.rank, b.fit, b.side, s.rport
    )
    SELECT rid, cid, rank, fit, side,
      CASE WHEN rank = 7 THEN 0 ELSE
        (CASE WHEN rport IS NOT NULL AND p_any AND NOT p_ok THEN 0 ELSE 1 END) * 1000
        + CAST(addr AS INTEGER) * 100
        + (CASE WHEN p_ok THEN 2 WHEN rport IS NOT NULL AND p_any THEN 0 ELSE 1 END) * 10 + fit
      END AS k
    FROM feat
    UNION ALL
    SELECT b.rid, b.cid, b.rank, b.fit, b.side, CASE WHEN b.rank = 7 THEN 0 ELSE 1000 + 10 + b.fit END
      FROM best b ANTI JOIN cmd_ties USING (rid);

    CREATE OR REPLACE TEMP TABLE kept AS
    WITH m AS (
      SELECT rid, max(k) AS kmax, count(*) AS n0 FROM keyed GROUP BY rid
    ), s AS (
      SELECT k.rid, max(k.k) AS k2 FROM keyed k JOIN m USING (rid) WHERE k.k < m.kmax GROUP BY k.rid
    )
    SELECT k.*, m.kmax, m.n0, s.k2 FROM keyed k JOIN m USING (rid) LEFT JOIN s USING (rid)
    WHERE k.k = m.kmax;

    CREATE OR REPLACE TEMP TABLE att AS
    WITH kn AS (SELECT rid, count(*) AS n FROM kept GROUP BY rid),
    kc AS (SELECT kept.*, kn.n FROM kept JOIN kn USING (rid)),
    one AS (
      SELECT k.rid, k.rank, 1 AS n, k.side AS local_side, k.fit, k.kmax, k.n0, k.k2,
             [k.cid] AS candidate_cids, k.cid AS cid0, 1 AS ne, 1 AS nr, 1 AS ns,
             CASE WHEN c.step IS NULL THEN 0 ELSE 1 END AS cs, c.step AS s0
      FROM kc k JOIN c USING (cid) WHERE k.n = 1
    ), m0 AS (
      SELECT rid, min(rank) AS rank, count(*) AS n, min(side) AS local_side, max(fit) AS fit,
             any_value(kmax) AS kmax, any_value(n0) AS n0, any_value(k2) AS k2,
             list(cid ORDER BY cid)[1:{MAX_CANDIDATES}] AS candidate_cids,
             arg_min(cid, cstart) AS cid0,
             min(eid) AS e_lo, max(eid) AS e_hi,
             min(coalesce(run_id, '')) = max(coalesce(run_id, '')) AS one_run,
             min(step) AS s0, max(step) AS s1, count(step) AS cs
      FROM (SELECT kc.*, c.start AS cstart, c.eid, c.run_id, c.step FROM kc JOIN c USING (cid) WHERE kc.n > 1)
      GROUP BY rid
    ), ne AS (  -- episodes counted only where the candidates span more than one
      SELECT k.rid, count(DISTINCT c.eid) AS ne FROM kc k JOIN c USING (cid)
      WHERE k.rid IN (SELECT rid FROM m0 WHERE e_lo <> e_hi) GROUP BY k.rid
    ), many AS (
      SELECT m0.rid, rank, n, local_side, fit, kmax, n0, k2, candidate_cids, cid0,
             coalesce(ne.ne, 1) AS ne, CASE WHEN one_run THEN 1 ELSE 2 END AS nr,
             CASE WHEN s0 = s1 THEN 1 ELSE 2 END AS ns, cs, s0
      FROM m0 LEFT JOIN ne USING (rid)
    ), agg AS (SELECT * FROM one UNION ALL SELECT * FROM many)
    SELECT a.rid, a.rank,
      CASE a.rank {ranks} END AS method,
      (CASE a.rank {confs} END) / a.n
        * (CASE WHEN a.fit = 0 THEN {LINGER_FACTOR} ELSE 1.0 END)
        * (CASE WHEN a.k2 IS NOT NULL THEN {TIE_FACTOR} ELSE 1.0 END) AS confidence,
      a.n AS candidate_count,
      a.ne AS episode_count,
      a.local_side,
      a.candidate_cids,
      CASE WHEN a.n = 1 THEN c.tool_call_id END AS tool_call_id,
      CASE WHEN a.nr = 1 THEN c.run_id END AS run_id,
      CASE WHEN a.ne = 1 THEN c.episode_id END AS episode_id,
      CASE WHEN a.ns = 1 AND a.cs = a.n THEN a.s0 END AS step,
      CASE WHEN a.n = 1 THEN c.turn END AS turn,
      CASE a.fit WHEN 2 THEN 'inside' WHEN 1 THEN 'skew' ELSE 'after' END AS timing,
      CASE WHEN a.k2 IS NULL THEN NULL
           WHEN a.kmax // 1000 <> a.k2 // 1000 THEN 'port_disagreement'
           WHEN (a.kmax // 100) % 10 <> (a.k2 // 100) % 10 THEN 'names_address'
           WHEN (a.kmax // 10) % 10 <> (a.k2 // 10) % 10 THEN 'names_port'
           WHEN a.kmax % 10 = 2 THEN 'inside_interval'
           ELSE 'still_running' END AS tie_break,
      a.n0 - a.n AS ruled_out,
      a.k2 IS NOT NULL AND (a.kmax // 100) % 10 = 1 AS names_address,
      a.k2 IS NOT NULL AND (a.kmax // 10) % 10 = 2 AS names_port
    FROM agg a JOIN c ON c.cid = a.cid0;
    """


def calls_table(calls: Sequence[TraceRecord]) -> pa.Table:
    """The calls as an Arrow table; ``cid`` numbers them in start order, ``eid`` their episodes."""
    order = sorted(range(len(calls)), key=lambda i: (calls[i].start, calls[i].tool_call_id))
    return calls_table_in_order([calls[i] for i in order])


def calls_table_in_order(
    calls: Sequence[TraceRecord], first_cid: int = 0, eids: dict[Any, int] | None = None
) -> pa.Table:
    """The calls as given (``cid`` from ``first_cid`` on); ``eids`` keeps episode ids across calls."""
    episodes: dict[Any, int] = {} if eids is None else eids
    cols: dict[str, list[Any]] = {
        "cid": list(range(first_cid, first_cid + len(calls))),
        "eid": [episodes.setdefault((c.run_id, c.episode_id), len(episodes)) for c in calls],
    }
    for name in CALL_SCHEMA.names[2:]:
        cols[name] = [getattr(c, name) for c in calls]
    return pa.table(cols, schema=CALL_SCHEMA)


def refs_table(calls: pa.Table) -> pa.Table:
    """The addresses, host names and ports each call's command names (see ``_cmdrefs``)."""
    cids: list[int] = []
    hosts: list[str | None] = []
    ports: list[int | None] = []
    for cid, command in zip(
        calls.column("cid").to_pylist(), calls.column("command").to_pylist(), strict=True
    ):
        for host, port in command_refs(command or ""):
            cids.append(cid)
            hosts.append(host)
            ports.append(port)
    return pa.table({"cid": cids, "host": hosts, "port": ports}, schema=REFS_SCHEMA)

"""Live attribution: records as they are read, against the calls known so far; no threads here.

A record is attributed with the same SQL as ``correlate`` (``attribute_records``)
the moment it is read, and emitted at once when the evidence is final: the
egress proxy's own tuple, a flow continuation, a command naming the
destination, or sandbox-level evidence inside a call's interval once the
record's window is over (a coarse record may cover later calls too). Otherwise it
waits, because the call it belongs to may not be known yet (Corral records a
tool call when it ends): node-only evidence and sandbox evidence that reaches a
call only through the skew allowance, or after it ended, are emitted after
``settle_s``; a record nothing explains waits up to ``hold_s``, retried whenever
calls (or NAT entries) arrive that name one of its addresses, then counts as
unattributed. conntrack entries are kept for ``NAT_KEEP_S`` so that a firewall
record read later still finds its NAT entry, and each flow's last attributed
record for ``FLOW_IDLE_S`` so that its continuations do.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from corral.correlate._attribute import LINGER_S, METHODS, calls_table_in_order, refs_table
from corral.correlate._correlate import (
    ATT_COLS,
    ROW_RECORD_COLS,
    attribute_records,
    attribution_of_row,
    egress_table,
    join_attribution,
)
from corral.correlate._flows import FLOW_IDLE_S
from corral.correlate._record import RECORD_SCHEMA
from corral.correlate._result import Attribution
from corral.correlate._tracefiles import Call
from corral.correlate._traces import TraceSet

NAT_KEEP_S = 120.0
MAX_NAT = 100_000
MAX_ANCHORS = 200_000
_FINAL = {"egress_5tuple", "flow_continuation", "node_time_command"}
_SANDBOX = {"conntrack_nat", "sandbox_ip_time", "workload_time"}
_STRONG = METHODS["workload_time"][0]
_CONT = METHODS["flow_continuation"]
Row = dict[str, Any]  # one attributed record: record columns, attribution columns, ``continues``
Made = tuple[Row, float]  # an attribution row, and when its record was read (monotonic)
_ROW_COLS = [*ROW_RECORD_COLS, *(c for c in ATT_COLS if c not in ("rid", "via_rid")), "continues"]
_PEND_SCHEMA = RECORD_SCHEMA.append(pa.field("_uid", pa.int64())).append(pa.field("_seen", pa.float64()))


@dataclass
class LiveCounters:
    records: int = 0
    attributed: int = 0
    unattributed: int = 0  # waited ``hold_s`` (or were pushed out by ``max_pending``) unexplained
    dropped: int = 0  # of those, pushed out by ``max_pending`` before their time


class LiveCorrelator:
    """Attribution state of one watch: the calls so far, records waiting, NAT entries, open flows."""

    def __init__(
        self,
        skew_s: float = 2.0,
        *,
        linger_s: float = LINGER_S,
        settle_s: float = 5.0,
        hold_s: float = 300.0,
        max_pending: int = 1_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: the wall clock the records' times are on (a record whose window is still open
        may yet overlap a call that has not ended, so is not recorded yet)."""
        self.clock = clock
        self.skew_s = skew_s
        self.linger_s = linger_s
        self.settle_s = settle_s
        self.hold_s = hold_s
        self.max_pending = max_pending
        self.traces = TraceSet()
        self.counters = LiveCounters()
        self.call_ids: list[str] = []
        self._eids: dict[Any, int] = {}
        self._calls = calls_table_in_order([])
        self._refs = refs_table(self._calls)
        self._egress = egress_table(self.traces)
        self._pend = _PEND_SCHEMA.empty_table()
        self._prov: dict[int, tuple[dict[str, Any], float]] = {}  # uid -> (attribution row, when read)
        self._nat = _PEND_SCHEMA.empty_table()
        self._anchors: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self._uid = 0
        self._keys: set[str] = set()  # addresses of calls added since the last step

    @property
    def pending(self) -> int:
        return int(self._pend.num_rows)

    # -- calls ----------------------------------------------------------------------------

    def add_calls(self, calls: Iterable[Call]) -> int:
        added = self.traces.add_calls(calls)
        if added:
            chunk = calls_table_in_order(added, len(self.call_ids), self._eids)
            self.call_ids += [c.tool_call_id for c in added]
            self._calls = pa.concat_tables([self._calls, chunk]).combine_chunks()
            self._refs = pa.concat_tables([self._refs, refs_table(chunk)]).combine_chunks()
            for c in added:
                self._keys.update(k for k in (c.sandbox_ip, c.host, c.sandbox_id) if k)
        return len(added)

    def add_traces(self, ts: TraceSet) -> int:
        """A store poll: calls with their outcomes, egress tuples, alerts."""
        n = self.add_calls((c, ts.info.get(c.tool_call_id)) for c in ts.calls)
        if ts.egress:
            self.traces.egress += ts.egress
            self._egress = egress_table(self.traces)
            self._keys.update(e.src_ip for e in ts.egress)
        self.traces.alerts += ts.alerts
        return n

    # -- records --------------------------------------------------------------------------

    def step(self, new: pa.Table, now: float) -> list[Made]:
        """Take the records read at ``now`` (monotonic seconds); the attributions ready now, with when each
        record was read."""
        first_new = self._uid
        if new.num_rows:
            self.counters.records += new.num_rows
            new = new.append_column("_uid", pa.array(range(self._uid, self._uid + new.num_rows), pa.int64()))
            new = new.append_column("_seen", pa.array([now] * new.num_rows, pa.float64()))
            self._uid += new.num_rows
            self._pend = pa.concat_tables([self._pend, new])
        keys, self._keys = self._keys, set()
        ct = (
            new.filter(pc.fill_null(pc.equal(new.column("kind"), "conntrack"), False))
            if new.num_rows
            else None
        )
        if ct is not None and ct.num_rows:
            keys.update(x for x in ct.column("reply_dst_ip").to_pylist() if x)
        out: list[Made] = []
        done: set[int] = set()
        if self._pend.num_rows:
            mask = pc.greater_equal(self._pend.column("_uid"), first_new)
            if keys:
                ks = pa.array(sorted(keys), pa.string())
                for col in ("src_ip", "dst_ip", "workload", "reply_dst_ip"):
                    hit = pc.fill_null(pc.is_in(self._pend.column(col), value_set=ks), False)
                    mask = pc.or_(mask, hit)
            retry = self._pend.filter(mask)
            if retry.num_rows:
                out += self._attribute(retry, done)
        out += self._settled(now, done)
        self._drop(done, now)
        if ct is not None and ct.num_rows:
            self._nat = pa.concat_tables([self._nat, ct])
        self._nat = self._nat.filter(pc.greater_equal(self._nat.column("_seen"), now - NAT_KEEP_S))
        if self._nat.num_rows > MAX_NAT:
            self._nat = self._nat.slice(self._nat.num_rows - MAX_NAT)
        self.counters.attributed += len(out)
        return out

    def _attribute(self, retry: pa.Table, done: set[int]) -> list[Made]:
        uids = retry.column("_uid")
        ctx = self._nat.filter(pc.invert(pc.is_in(self._nat.column("_uid"), value_set=uids.combine_chunks())))
        batch = pa.concat_tables([retry.select(RECORD_SCHEMA.names), ctx.select(RECORD_SCHEMA.names)])
        by = attribute_records(batch, self._calls, self._refs, self._egress, self.skew_s, self.linger_s)
        by = by.filter(pc.less(by.column("rid"), retry.num_rows))
        joined = join_attribution(batch, by).select(_ROW_COLS)  # only what an attribution shows
        got = dict(zip(by.column("rid").to_pylist(), joined.to_pylist(), strict=True))
        uid_list = uids.to_pylist()
        seen_list = retry.column("_seen").to_pylist()
        kid, ktup = _flow_keys(retry)
        # Continuations across steps: the flow's record attributed in an earlier step names the call.
        if self._anchors:
            for i in range(retry.num_rows):
                if _is_member(got.get(i)) and (kid[i] in self._anchors or ktup[i] in self._anchors):
                    rec = retry.slice(i, 1).select(RECORD_SCHEMA.names).to_pylist()[0]
                    inherited = self._inherit(rec, kid[i], ktup[i])
                    if inherited is not None:
                        got[i] = inherited
        out: list[Made] = []
        for i, row in sorted(got.items()):
            uid = uid_list[i]
            if _rank(row) <= _STRONG and not _is_member(row):
                self._remember(row, kid[i], ktup[i])
            if row["method"] in _FINAL or (
                row["method"] in _SANDBOX and row["timing"] == "inside" and self._window_over(row)
            ):
                out.append((self._out(row), seen_list[i]))
                done.add(uid)
                self._prov.pop(uid, None)
            else:
                self._prov[uid] = (row, seen_list[i])
        return out

    def _window_over(self, row: dict[str, Any]) -> bool:
        """The record's window (plus the skew) has passed: every call that overlaps it has started,
        though not necessarily ended. A coarse flow log (one record a minute) can cover several calls
        of one sandbox, the one that dialled coming after the one seen first."""
        end = row["end"] if row["end"] is not None else row["start"]
        return end is not None and end + self.skew_s <= self.clock()

    def _inherit(self, rec: dict[str, Any], kid: str | None, ktup: str | None) -> dict[str, Any] | None:
        t0 = rec["start"] if rec["start"] is not None else 0.0
        for k in (kid, ktup):
            if k is None or k not in self._anchors:
                continue
            row, last = self._anchors[k]
            if t0 - last > FLOW_IDLE_S:
                continue
            self._anchors[k] = (row, max(last, rec["end"] or t0))
            self._anchors.move_to_end(k)
            same = rec["src_ip"] == row["src_ip"] and rec["src_port"] == row["src_port"]
            inherited = {**row, **rec}
            inherited.update(
                method="flow_continuation",
                confidence=row["confidence"] * _CONT[1],
                local_side=row["local_side"] if same else 1 - row["local_side"],
                timing=None,
                tie_break=None,
                ruled_out=0,
                continues=f"{row['file']}:{row['line']}",
                via_method=row["method"],
            )
            return inherited
        return None

    def _remember(self, row: dict[str, Any], kid: str | None, ktup: str | None) -> None:
        t1 = row["end"] if row["end"] is not None else (row["start"] or 0.0)
        for k in (kid, ktup):
            if k is not None:
                self._anchors[k] = (row, t1)
                self._anchors.move_to_end(k)
        while len(self._anchors) > MAX_ANCHORS:
            self._anchors.popitem(last=False)

    def _settled(self, now: float, done: set[int]) -> list[Made]:
        """Waiting attributions whose ``settle_s`` is over."""
        ready = [u for u, (_, seen) in self._prov.items() if u not in done and now - seen >= self.settle_s]
        out = []
        for uid in ready:
            row, seen = self._prov.pop(uid)
            out.append((self._out(row), seen))
            done.add(uid)
        return out

    def _drop(self, done: set[int], now: float) -> None:
        pend = self._pend
        if done:
            pend = pend.filter(
                pc.invert(pc.is_in(pend.column("_uid"), value_set=pa.array(sorted(done), pa.int64())))
            )
        expired = pc.less(pend.column("_seen"), now - self.hold_s)
        n_old = int(pc.sum(expired).as_py() or 0)
        if n_old:
            gone = pend.filter(expired).column("_uid").to_pylist()
            self.counters.unattributed += sum(1 for u in gone if self._prov.pop(u, None) is None)
            pend = pend.filter(pc.invert(expired))
        if pend.num_rows > self.max_pending:
            extra = pend.num_rows - self.max_pending
            for u in pend.slice(0, extra).column("_uid").to_pylist():
                self._prov.pop(u, None)
            self.counters.unattributed += extra
            self.counters.dropped += extra
            pend = pend.slice(extra)
        self._pend = pend.combine_chunks() if pend.num_columns and len(pend.column(0).chunks) > 8 else pend

    def flush(self) -> list[Made]:
        """Every waiting attribution now (at the end of a watch); unexplained records count as such."""
        out = [(self._out(row), seen) for row, seen in self._prov.values()]
        self.counters.unattributed += self._pend.num_rows - len(self._prov)
        self._prov.clear()
        self._pend = _PEND_SCHEMA.empty_table()
        self.counters.attributed += len(out)
        return out

    def _out(self, row: Row) -> Row:
        return row

    def attribution(self, row: Row) -> Attribution:
        """The typed attribution of a row this correlator made."""
        ids = self.call_ids
        return attribution_of_row(row, [ids[c] for c in row["candidate_cids"]])


def _rank(row: dict[str, Any]) -> int:
    return METHODS[row["method"]][0]


def _is_member(row: dict[str, Any] | None) -> bool:
    """Takes a flow's attribution: no evidence of its own, node-only, or "one of the sandbox's calls"."""
    if row is None:
        return True
    rank = _rank(row)
    return rank >= METHODS["node_time_command"][0] or (
        row["timing"] == "after" and row["candidate_count"] > 1
    )


def _flow_keys(t: pa.Table) -> tuple[list[str | None], list[str | None]]:
    """The flow-id and 5-tuple keys of each record (as ``_flows`` chains them), vectorised."""
    sep = "|"
    fid = pc.binary_join_element_wise(
        "i",
        t.column("format"),
        t.column("file"),
        pc.fill_null(t.column("reporter"), ""),
        t.column("flow_id"),
        sep,
    )
    a = pc.binary_join_element_wise(t.column("src_ip"), pc.cast(t.column("src_port"), pa.string()), sep)
    b = pc.binary_join_element_wise(t.column("dst_ip"), pc.cast(t.column("dst_port"), pa.string()), sep)
    lo = pc.if_else(pc.less_equal(a, b), a, b)
    hi = pc.if_else(pc.less_equal(a, b), b, a)
    ok = pc.is_in(t.column("proto"), value_set=pa.array(["tcp", "udp", "sctp"]))
    tup = pc.if_else(
        pc.fill_null(ok, False), pc.binary_join_element_wise("t", t.column("proto"), lo, hi, sep), None
    )
    return fid.to_pylist(), tup.to_pylist()

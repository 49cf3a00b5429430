"""Sigma correlation rules (event_count, value_count, temporal) over a sliding window, per group.

Streaming semantics: a correlation fires when its condition becomes true for a
group (e.g. the 10th denied connection of one episode within 5 minutes), then
that group's window starts empty, so a sustained burst raises one alert per
threshold reached, not one per event. Events whose group-by fields are all
missing cannot be attributed and are not counted. Memory is bounded per group
and in the number of groups.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral.detect._compile import Unsupported
from corral.detect._model import RuleInfo

if TYPE_CHECKING:
    from sigma.correlations import SigmaCorrelationRule

MAX_GROUPS = 100_000
MAX_WINDOW_EVENTS = 100_000
_OPS: dict[str, Any] = {
    "gte": lambda n, c: n >= c,
    "gt": lambda n, c: n > c,
    "eq": lambda n, c: n == c,
}


@dataclass(frozen=True)
class CorrelationSpec:
    info: RuleInfo
    type: str  # event_count, value_count, temporal
    rule_ids: tuple[str, ...]
    group_by: tuple[str, ...]
    timespan_ns: int
    op: str  # gte, gt, eq
    count: float
    value_field: str | None = None

    def holds(self, n: int) -> bool:
        return bool(_OPS[self.op](n, self.count))


def correlation_spec(
    corr: SigmaCorrelationRule, info: RuleInfo, loaded: Mapping[int, RuleInfo]
) -> CorrelationSpec:
    from sigma.correlations import (
        SigmaCorrelationCondition,
        SigmaCorrelationConditionOperator,
        SigmaCorrelationType,
    )
    from sigma.rule import SigmaRule

    kinds = {
        SigmaCorrelationType.EVENT_COUNT: "event_count",
        SigmaCorrelationType.VALUE_COUNT: "value_count",
        SigmaCorrelationType.TEMPORAL: "temporal",
    }
    if corr.type not in kinds:
        raise Unsupported(f"correlation type {corr.type.name.lower()} is not supported")
    if corr.aliases.aliases:
        raise Unsupported("correlation field aliases are not supported")
    ids = []
    for ref in corr.rules or []:
        target = ref.rule
        if not isinstance(target, SigmaRule):
            raise Unsupported(f"correlation of correlation ({ref.reference}) is not supported")
        if id(target) not in loaded:
            raise Unsupported(f"references rule {ref.reference!r}, which was not loaded")
        ids.append(loaded[id(target)].id)
    cond = corr.condition
    kind = kinds[corr.type]
    if kind == "temporal" and not isinstance(cond, SigmaCorrelationCondition):
        op, count, value_field = "gte", float(len(ids)), None
    elif isinstance(cond, SigmaCorrelationCondition):
        op = cond.op.name.lower()
        if op not in _OPS or not isinstance(cond.op, SigmaCorrelationConditionOperator):
            raise Unsupported(f"condition {op} fires on absence; streaming detection supports gte, gt, eq")
        count = float(cond.count)
        value_field = cond.fieldref if isinstance(cond.fieldref, str) else None
        if kind == "value_count" and value_field is None:
            raise Unsupported("value_count needs exactly one condition field")
    else:
        raise Unsupported("extended correlation conditions are not supported")
    return CorrelationSpec(
        info=info,
        type=kind,
        rule_ids=tuple(ids),
        group_by=tuple(corr.group_by or ()),
        timespan_ns=int(corr.timespan.seconds * 1_000_000_000),
        op=op,
        count=count,
        value_field=value_field,
    )


@dataclass
class _Window:
    events: deque[tuple[int, Any]] = field(default_factory=deque)
    counts: dict[Any, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Fired:
    spec: CorrelationSpec
    group: dict[str, Any]
    count: int


class Correlator:
    """Thread-safe streaming state for a fixed set of correlation rules."""

    def __init__(self, specs: list[CorrelationSpec]) -> None:
        self.specs = specs
        self.by_rule: dict[str, list[int]] = {}
        for i, s in enumerate(specs):
            for rid in s.rule_ids:
                self.by_rule.setdefault(rid, []).append(i)
        self.windows: dict[tuple[int, tuple[Any, ...]], _Window] = {}
        self.lock = threading.Lock()

    def feed(self, rule_id: str, rec: Mapping[str, Any], t_ns: int) -> list[Fired]:
        idxs = self.by_rule.get(rule_id)
        if not idxs:
            return []
        fired: list[Fired] = []
        with self.lock:
            for i in idxs:
                f = self._feed_one(i, rule_id, rec, t_ns)
                if f is not None:
                    fired.append(f)
        return fired

    def _feed_one(self, i: int, rule_id: str, rec: Mapping[str, Any], t_ns: int) -> Fired | None:
        spec = self.specs[i]
        group_by = spec.group_by
        key = tuple([rec.get(f) for f in group_by])
        if group_by and key.count(None) == len(key):
            return None
        kind = spec.type
        if kind == "event_count":
            value: Any = None
        elif kind == "value_count":
            value = rec.get(spec.value_field or "")
            if value is None:
                return None
        else:
            value = rule_id
        wkey = (i, key)
        w = self.windows.get(wkey)
        if w is None:
            if len(self.windows) >= MAX_GROUPS:
                self.windows.pop(next(iter(self.windows)))
            w = self.windows[wkey] = _Window()
        horizon = t_ns - spec.timespan_ns
        ev, counts = w.events, w.counts
        while ev and (ev[0][0] < horizon or len(ev) >= MAX_WINDOW_EVENTS):
            old = ev.popleft()[1]
            left = counts[old] - 1
            if left:
                counts[old] = left
            else:
                del counts[old]
        ev.append((t_ns, value))
        counts[value] = counts.get(value, 0) + 1
        n = len(ev) if kind == "event_count" else len(counts)
        if n < spec.count or not spec.holds(n):  # every supported operator needs n >= count
            return None
        del self.windows[wkey]
        return Fired(spec, dict(zip(group_by, key, strict=True)), n)

"""Incidents: attributed violations and Corral's own alerts, grouped per run and episode.

One incident per guilty episode, so a guilty call is never split into a certain
incident and an "ambiguous" one: a record whose candidates span episodes but
include a call of exactly one certain incident is shown with that incident
(``shared_attribution_indexes``) instead of making an ambiguous incident of its
own. Severity comes from the infrastructure records, so it does not depend on
whether the calls were read from a trace file or from the event store (which
alone carries Corral's own alerts, reported beside it as ``alert_level``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from corral.correlate._result import Attribution, CorralAlertOut, Destination, Incident
from corral.correlate._tracefiles import CallInfo
from corral.correlate._traces import StoreAlert
from corral.events import TraceRecord

LEVELS = ("informational", "low", "medium", "high", "critical")
_RANK = {lv: i for i, lv in enumerate(LEVELS)}
BURST_DENIES = 10  # this many denied attempts in one incident are an attempt pattern, not noise


def is_violation(a: Attribution) -> bool:
    """A record worth an incident: denied, alerting, or an alert-kind event."""
    return a.kind == "alert" or a.action in ("deny", "alert")


def record_severity(a: Attribution) -> str:
    return _severity(a.severity, a.kind, a.action)


def row_severity(row: Mapping[str, Any]) -> str:
    """``record_severity`` of a record's row (its ``severity``, ``kind`` and ``action`` columns)."""
    return _severity(row["severity"], row["kind"], row["action"])


def _severity(severity: str | None, kind: str | None, action: str | None) -> str:
    if severity in _RANK:
        return str(severity)
    if kind == "alert" or action == "alert":
        return "high"
    if action == "deny":
        return "medium"
    return "low"


def _max_level(levels: Iterable[str]) -> str:
    return max(levels, key=lambda lv: _RANK.get(lv, 0), default="informational")


def alert_out(al: StoreAlert) -> CorralAlertOut:
    return CorralAlertOut(
        time=al.time,
        rule_id=al.rule_id,
        title=al.title,
        level=str(al.level),
        tool_call_id=al.tool_call_id,
        step=al.step,
        turn=al.turn,
    )


def build_incidents(
    attributions: list[Attribution],
    calls: Mapping[str, TraceRecord],
    alerts: list[StoreAlert],
    include_allowed: bool = False,
    info: Mapping[str, CallInfo] | None = None,
) -> list[Incident]:
    info = info or {}
    certain: dict[tuple[str, str], list[int]] = defaultdict(list)
    ambiguous: list[int] = []
    for i, a in enumerate(attributions):
        if not (include_allowed or is_violation(a)):
            continue
        if a.episode_count == 1:
            certain[(a.run_id or "", a.episode_id or "")].append(i)
        else:
            ambiguous.append(i)
    alerts_by_ep: dict[tuple[str, str], list[StoreAlert]] = defaultdict(list)
    for al in alerts:
        alerts_by_ep[(al.run_id or "", al.episode_id or "")].append(al)
        certain.setdefault((al.run_id or "", al.episode_id or ""), [])

    # The calls each certain incident is about: an ambiguous record naming one of them joins it.
    owner: dict[str, tuple[str, str]] = {}
    for key, idx in certain.items():
        for i in idx:
            for cid in _calls_of(attributions[i]):
                owner[cid] = key
        for al in alerts_by_ep.get(key, []):
            if al.tool_call_id:
                owner[al.tool_call_id] = key
    shared: dict[tuple[str, str], list[int]] = defaultdict(list)
    left: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i in ambiguous:
        a = attributions[i]
        hit = {owner[c] for c in a.candidates if c in owner}
        if len(hit) > 1:  # several certain incidents: the one with the same destination, if just one
            same = {k for k in hit if any(attributions[j].remote_ip == a.remote_ip for j in certain[k])}
            hit = same if len(same) == 1 else hit
        if len(hit) == 1:
            shared[next(iter(hit))].append(i)
        else:
            left[tuple(sorted(_episodes(a, calls)))].append(i)

    incidents: list[Incident] = []
    for (run, ep), idx in certain.items():
        ep_alerts = sorted(alerts_by_ep.get((run, ep), []), key=lambda x: x.time)
        incidents.append(
            _incident(
                attributions,
                idx,
                shared.get((run, ep), []),
                run or None,
                ep or None,
                False,
                [],
                ep_alerts,
                calls,
                info,
            )
        )
    for eps, idx in left.items():
        incidents.append(_incident(attributions, idx, [], None, None, True, list(eps), [], calls, info))
    # Most severe first; at equal severity, incidents the evidence pins down before ambiguous ones.
    incidents.sort(key=lambda inc: (-_RANK[inc.severity], inc.ambiguous, inc.first_time or 0.0))
    return [inc.model_copy(update={"id": f"INC-{n:04d}"}) for n, inc in enumerate(incidents, 1)]


def _calls_of(a: Attribution) -> list[str]:
    return [a.tool_call_id] if a.tool_call_id else list(a.candidates)


def _episodes(a: Attribution, calls: Mapping[str, TraceRecord]) -> set[str]:
    return {f"{c.run_id or ''}/{c.episode_id or ''}" for cid in a.candidates if (c := calls.get(cid))}


def _incident(
    attributions: list[Attribution],
    idx: list[int],
    shared_idx: list[int],
    run_id: str | None,
    episode_id: str | None,
    ambiguous: bool,
    candidate_episodes: list[str],
    alerts: list[StoreAlert],
    calls: Mapping[str, TraceRecord],
    info: Mapping[str, CallInfo],
) -> Incident:
    recs = [attributions[i] for i in idx]
    times = [t for r in recs for t in (r.time, r.end) if t is not None] + [al.time for al in alerts]
    call_ids: list[str] = []
    for r in recs:
        for cid in _calls_of(r):
            if cid not in call_ids:
                call_ids.append(cid)
    for al in alerts:
        if al.tool_call_id and al.tool_call_id not in call_ids:
            call_ids.append(al.tool_call_id)
    known = sorted((calls[c] for c in call_ids if c in calls), key=lambda c: (c.start, c.tool_call_id))
    certain = [calls[r.tool_call_id] for r in recs if r.tool_call_id and r.tool_call_id in calls]
    certain += [calls[al.tool_call_id] for al in alerts if al.tool_call_id and al.tool_call_id in calls]
    first = min(certain, key=lambda c: (c.start, c.tool_call_id)) if certain else None
    dests: dict[tuple[str | None, int | None, str | None], list[Attribution]] = defaultdict(list)
    for r in recs:
        dests[(r.remote_ip, r.remote_port, r.proto)].append(r)
    destinations = [
        Destination(
            ip=ip,
            port=port,
            proto=proto,
            count=len(rs),
            actions=sorted({r.action for r in rs if r.action}),
            signatures=sorted({r.signature for r in rs if r.signature}),
        )
        for (ip, port, proto), rs in sorted(dests.items(), key=lambda kv: -len(kv[1]))
    ]
    alert_level = _max_level(str(al.level) for al in alerts) if alerts else None
    if recs:
        severity = _max_level(record_severity(r) for r in recs)
        if sum(1 for r in recs if r.action == "deny") >= BURST_DENIES and _RANK[severity] < _RANK["high"]:
            severity = "high"
    else:
        severity = alert_level or "informational"
    steps = sorted(
        {c.step for c in known if c.step is not None} | {r.step for r in recs if r.step is not None}
    )
    ids = [c.tool_call_id for c in known] or call_ids
    outcome = Counter(_status(info.get(c)) for c in ids)
    return Incident(
        id="",
        run_id=run_id,
        episode_id=episode_id,
        ambiguous=ambiguous,
        candidate_episodes=candidate_episodes if ambiguous else [],
        severity=severity,
        first_time=min(times) if times else None,
        last_time=max(times) if times else None,
        steps=steps,
        record_count=len(recs),
        actions=dict(Counter(r.action or "log" for r in recs)),
        methods=dict(Counter(r.method for r in recs)),
        min_confidence=min((r.confidence for r in recs), default=1.0),
        destinations=destinations,
        first_tool_call_id=first.tool_call_id if first else None,
        first_command=first.command if first else None,
        tool_call_ids=ids,
        alerts=[alert_out(al) for al in alerts],
        attribution_indexes=idx,
        shared_attribution_indexes=shared_idx,
        alert_level=alert_level,
        calls_blocked=outcome["blocked"],
        calls_ran=outcome["ran"],
        calls_unknown=outcome["unknown"],
    )


def _status(info: CallInfo | None) -> str:
    if info is None or info.blocked is None:
        return "unknown"
    return "blocked" if info.blocked else "ran"

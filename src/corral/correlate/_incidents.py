"""Incidents: attributed violations and Corral's own alerts, grouped per run and episode."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from corral.correlate._result import Attribution, CorralAlertOut, Destination, Incident
from corral.correlate._traces import StoreAlert
from corral.events import TraceRecord

LEVELS = ("informational", "low", "medium", "high", "critical")
_RANK = {lv: i for i, lv in enumerate(LEVELS)}


def is_violation(a: Attribution) -> bool:
    """A record worth an incident: denied, alerting, or an alert-kind event."""
    return a.kind == "alert" or a.action in ("deny", "alert")


def record_severity(a: Attribution) -> str:
    if a.severity in _RANK:
        return str(a.severity)
    if a.kind == "alert" or a.action == "alert":
        return "high"
    if a.action == "deny":
        return "medium"
    return "low"


def _max_level(levels: Iterable[str]) -> str:
    return max(levels, key=lambda lv: _RANK.get(lv, 0), default="informational")


def build_incidents(
    attributions: list[Attribution],
    calls: Mapping[str, TraceRecord],
    alerts: list[StoreAlert],
    include_allowed: bool = False,
) -> list[Incident]:
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, a in enumerate(attributions):
        if not (include_allowed or is_violation(a)):
            continue
        if a.episode_count == 1:
            groups[("episode", a.run_id or "", a.episode_id or "")].append(i)
        else:
            # Candidates span episodes: keep them together as one ambiguous incident per candidate set.
            groups[("ambiguous", *sorted(_episodes(a, calls)))].append(i)
    alerts_by_ep: dict[tuple[str, str], list[StoreAlert]] = defaultdict(list)
    for al in alerts:
        alerts_by_ep[(al.run_id or "", al.episode_id or "")].append(al)
        groups.setdefault(("episode", al.run_id or "", al.episode_id or ""), [])

    incidents: list[Incident] = []
    for key, idx in groups.items():
        recs = [attributions[i] for i in idx]
        ambiguous = key[0] == "ambiguous"
        run_id, episode_id = (None, None) if ambiguous else (key[1] or None, key[2] or None)
        ep_alerts = [] if ambiguous else sorted(alerts_by_ep.get((key[1], key[2]), []), key=lambda x: x.time)
        incidents.append(_incident(recs, idx, run_id, episode_id, ambiguous, list(key[1:]), ep_alerts, calls))
    # Most severe first; at equal severity, incidents the evidence pins down before ambiguous ones.
    incidents.sort(key=lambda inc: (-_RANK[inc.severity], inc.ambiguous, inc.first_time or 0.0))
    return [inc.model_copy(update={"id": f"INC-{n:04d}"}) for n, inc in enumerate(incidents, 1)]


def _episodes(a: Attribution, calls: Mapping[str, TraceRecord]) -> set[str]:
    return {f"{c.run_id or ''}/{c.episode_id or ''}" for cid in a.candidates if (c := calls.get(cid))}


def _incident(
    recs: list[Attribution],
    idx: list[int],
    run_id: str | None,
    episode_id: str | None,
    ambiguous: bool,
    candidate_episodes: list[str],
    alerts: list[StoreAlert],
    calls: Mapping[str, TraceRecord],
) -> Incident:
    times = [t for r in recs for t in (r.time, r.end) if t is not None] + [al.time for al in alerts]
    call_ids: list[str] = []
    for r in recs:
        for cid in [r.tool_call_id] if r.tool_call_id else r.candidates:
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
    severity = _max_level([record_severity(r) for r in recs] + [str(al.level) for al in alerts])
    if len([r for r in recs if r.action == "deny"]) >= 10 and _RANK[severity] < _RANK["high"]:
        severity = "high"  # a burst of blocked attempts is an attempt pattern, not noise
    steps = sorted(
        {c.step for c in known if c.step is not None} | {r.step for r in recs if r.step is not None}
    )
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
        tool_call_ids=[c.tool_call_id for c in known] or call_ids,
        alerts=[
            CorralAlertOut(
                time=al.time,
                rule_id=al.rule_id,
                title=al.title,
                level=str(al.level),
                tool_call_id=al.tool_call_id,
                step=al.step,
                turn=al.turn,
            )
            for al in alerts
        ],
        attribution_indexes=idx,
    )

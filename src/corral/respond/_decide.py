"""The pure response decision: alerts of one call in, a verdict out. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence

from corral.events import Alert, Level
from corral.policy import ResponseSection
from corral.respond._model import CallVerdict, Response
from corral.respond._penalty import PenaltyFn, table_penalty


def _at_least(alerts: Sequence[Alert], level: str | None) -> list[Alert]:
    if level is None:
        return []
    floor = Level(level).rank
    return [a for a in alerts if a.level.rank >= floor]


def _triggers(alerts: Sequence[Alert], min_level: str | None, categories: Sequence[str]) -> list[str]:
    hits = _at_least(alerts, min_level) + [a for a in alerts if a.category in categories]
    return sorted({a.rule_id for a in hits})


def decide(
    alerts: Sequence[Alert],
    *,
    blocked: bool,
    section: ResponseSection,
    penalty_fn: PenaltyFn = table_penalty,
    breaker_tripped: bool = False,
    halted_before: bool = False,
) -> CallVerdict:
    """What the trainer must do about one call.

    ``breaker_tripped``: this call's alerts tripped the circuit breaker;
    ``halted_before``: the run was halted already (the call was refused).
    """
    if not section.enabled:
        return CallVerdict()
    out: list[Response] = []
    if halted_before:
        out.append(Response(action="block", reason="circuit_breaker", detail={"text": "run halted"}))
    elif blocked:
        rules = sorted({a.rule_id for a in alerts})
        out.append(Response(action="block", reason="detection", detail={"rules": rules}))
    try:
        penalty = float(penalty_fn(alerts, blocked, section.penalty)) if (alerts or blocked) else 0.0
    except Exception as exc:  # a broken penalty function must not make a violation free: fail closed
        penalty = section.penalty.max_per_call_penalty
        out.append(Response(action="penalty", reason="penalty_function_error", detail={"error": repr(exc)}))
    if penalty < 0:
        penalty = 0.0
    if penalty > 0:
        cats = sorted({a.category for a in alerts})
        out.append(Response(action="penalty", reason="alerts", detail={"value": penalty, "categories": cats}))
    q = section.quarantine
    q_rules = _triggers(alerts, q.min_level, q.categories)
    quarantine = bool(q_rules) or (blocked and q.on_blocked) or halted_before
    if quarantine:
        out.append(
            Response(
                action="quarantine", reason="alerts" if q_rules else "blocked", detail={"rules": q_rules}
            )
        )
    e = section.end_episode
    e_rules = _triggers(alerts, e.min_level, e.categories)
    end = bool(e_rules) or (blocked and e.on_blocked) or halted_before
    halted = halted_before
    if breaker_tripped:
        cb = section.circuit_breaker
        detail = {"min_level": cb.min_level, "threshold": cb.threshold, "window_s": cb.window_s}
        out.append(Response(action=cb.action, reason="circuit_breaker", detail=detail))
        end = True
        halted = halted or cb.action == "halt"
    if end:
        reason = "circuit_breaker" if (breaker_tripped or halted_before) else "alerts"
        out.append(Response(action="end_episode", reason=reason, detail={"rules": e_rules}))
    return CallVerdict(
        penalty=penalty, quarantine=quarantine, end_episode=end, halted=halted, responses=tuple(out)
    )

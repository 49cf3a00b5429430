"""The Responder: applies the policy's response section to each tool call's result.

It keeps the run-wide state (the circuit breaker, quarantined episodes), emits
every response as a ``PolicyDecision`` event, and passes alerts to the notifier.
The decision itself is ``decide`` (pure). Violations that infrastructure logs
show, once ``corral.correlate.Watcher`` attributes them, come in through
``on_attributed``: a burst for one episode quarantines it, a burst across a run
trips the circuit breaker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from corral.errors import CircuitBreakerTripped
from corral.events import Alert, Event, Level, PolicyDecision, TraceContext
from corral.policy import Policy, ResponseSection
from corral.respond._attributed import AttributedBursts
from corral.respond._breaker import CircuitBreaker
from corral.respond._decide import decide
from corral.respond._model import AttributedVerdict, CallVerdict, EpisodeSummary, Response, SummaryLogger
from corral.respond._notify import Notifier
from corral.respond._penalty import PenaltyRegistry
from corral.respond._sinks import AlertSink, build_sink
from corral.sandbox import ToolResult

EventSink = Callable[[Event], None]
_DEFAULT_REGISTRY = PenaltyRegistry()


def default_registry() -> PenaltyRegistry:
    """The registry ``Responder`` uses unless given one; register your penalty functions here."""
    return _DEFAULT_REGISTRY


class Responder:
    """One per training run (it holds the circuit breaker); thread-safe."""

    def __init__(
        self,
        policy: Policy | ResponseSection | None = None,
        *,
        event_sinks: Sequence[EventSink] = (),
        alert_sinks: Sequence[AlertSink] | None = None,
        loggers: Sequence[SummaryLogger] = (),
        registry: PenaltyRegistry | None = None,
        host: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if policy is None:
            policy = Policy.default()
        self.section = policy.response if isinstance(policy, Policy) else policy
        self._penalty_fn = (registry or _DEFAULT_REGISTRY).resolve(self.section.penalty.function)
        self._event_sinks = list(event_sinks)
        self._loggers = list(loggers)
        self._host = host
        self._clock = clock
        self._breaker = CircuitBreaker(self.section.circuit_breaker)
        self._bursts = AttributedBursts(self.section.attributed)
        self._raise_pending: str | None = None  # tripped by attributed violations, action "raise"
        self._lock = threading.Lock()
        sinks = list(alert_sinks) if alert_sinks is not None else [build_sink(c) for c in self.section.sinks]
        self.notifier = Notifier(self.section.grouping, sinks, clock=clock) if sinks else None

    @property
    def halted(self) -> bool:
        """The circuit breaker halted the run: every later call is refused."""
        return self._breaker.tripped and self.section.circuit_breaker.action == "halt"

    def add_event_sink(self, sink: EventSink) -> None:
        self._event_sinks.append(sink)

    @property
    def quarantined_episodes(self) -> frozenset[tuple[str, str]]:
        """(run_id, episode_id) of every episode quarantined by attributed violations (run_id '' if none)."""
        with self._lock:
            return frozenset(self._bursts.quarantined)

    def is_quarantined(self, run_id: str | None, episode_id: str) -> bool:
        """True once attributed violations quarantined this episode: drop its trajectory from the update."""
        with self._lock:
            return (run_id or "", episode_id) in self._bursts.quarantined

    def on_result(self, result: ToolResult) -> CallVerdict:
        """The verdict for one call's result; raises ``CircuitBreakerTripped`` when policy says raise."""
        with self._lock:
            pending, self._raise_pending = self._raise_pending, None
        if pending is not None:
            raise CircuitBreakerTripped(pending)
        with self._lock:
            tripped = self._breaker.feed(result.alerts, self._clock())
        verdict = decide(
            result.alerts,
            blocked=result.blocked,
            section=self.section,
            penalty_fn=self._penalty_fn,
            breaker_tripped=tripped,
        )
        if self.notifier is not None and result.alerts:
            self.notifier.publish(
                [
                    Event(host=self._host, sandbox_id=result.sandbox_id, ctx=result.ctx, data=a)
                    for a in result.alerts
                ]
            )
        self._emit(verdict, result.ctx, result.sandbox_id, skip_detection_block=True)
        if tripped and self.section.circuit_breaker.action == "raise":
            cb = self.section.circuit_breaker
            raise CircuitBreakerTripped(
                f"{self._breaker.in_window} alerts at or above {cb.min_level} within {cb.window_s:g}s "
                f"(threshold {cb.threshold}); last call {result.ctx.tool_call_id} in run {result.ctx.run_id}"
            )
        return verdict

    def on_attributed(
        self,
        ctx: TraceContext,
        *,
        level: Level | str,
        time_s: float | None = None,
        confidence: float = 1.0,
        sandbox_id: str | None = None,
        title: str = "violation in an infrastructure log",
        detail: Mapping[str, Any] | None = None,
    ) -> AttributedVerdict:
        """Count one violation a log showed and attributed to ``ctx`` (its run, episode, maybe call).

        ``time_s`` is the record's time (windows run on it; default: now),
        ``confidence`` the attribution's. Thread-safe; never raises: with the
        breaker's action ``raise``, the next ``on_result`` raises instead.
        """
        sec = self.section.attributed
        lv = Level(level)
        counted = self.section.enabled and sec.enabled and lv.rank >= Level(sec.min_level).rank
        if not counted:
            return AttributedVerdict(quarantined=self._quarantined(ctx), halted=self.halted)
        t = self._clock() if time_s is None else time_s
        episode_counts = confidence >= sec.min_confidence and ctx.episode_id is not None
        with self._lock:
            res = self._bursts.add(ctx.run_id, ctx.episode_id, t, episode_counts=episode_counts)
            tripped = res.trip and self._breaker.trip()
        info = {"level": lv.value, "confidence": confidence, **dict(detail or {})}
        responses: list[Response] = []
        if res.quarantine:
            responses.append(
                Response(
                    action="quarantine",
                    reason="attributed_violations",
                    detail={**info, "count": res.episode_count, "window_s": sec.episode_window_s},
                )
            )
        cb = self.section.circuit_breaker
        if tripped:
            responses.append(
                Response(
                    action="halt" if cb.action == "halt" else "raise",
                    reason="attributed_violations",
                    detail={**info, "count": res.run_count, "window_s": sec.run_window_s},
                )
            )
            if cb.action == "raise":
                with self._lock:
                    self._raise_pending = (
                        f"{res.run_count} attributed violations within {sec.run_window_s:g}s in run "
                        f"{ctx.run_id} (threshold {sec.run_threshold}); last in episode {ctx.episode_id}"
                    )
        if self.notifier is not None:
            alert = Alert(
                rule_id="corral.attributed_violation", title=title, level=lv, category="network", matched=info
            )
            self.notifier.publish([Event(host=self._host, sandbox_id=sandbox_id, ctx=ctx, data=alert)])
        for r in responses:
            self._emit_one(r, ctx, sandbox_id)
        return AttributedVerdict(
            counted=True,
            quarantine=res.quarantine,
            quarantined=self._quarantined(ctx),
            halted=self._breaker.tripped and cb.action == "halt",
            episode_count=res.episode_count,
            run_count=res.run_count,
            responses=tuple(responses),
        )

    def _quarantined(self, ctx: TraceContext) -> bool:
        return ctx.episode_id is not None and self.is_quarantined(ctx.run_id, ctx.episode_id)

    def _emit_one(self, r: Response, ctx: TraceContext, sandbox_id: str | None) -> None:
        ev = Event(
            host=self._host,
            sandbox_id=sandbox_id,
            ctx=ctx,
            data=PolicyDecision(action=r.action, reason=r.reason, detail=dict(r.detail)),
        )
        for sink in self._event_sinks:
            sink(ev)

    def refuse(self, ctx: TraceContext, sandbox_id: str) -> tuple[ToolResult, CallVerdict]:
        """A call made after the run was halted: it does not run; the episode ends."""
        result = ToolResult(
            exit_code=None,
            blocked=True,
            block_reason="run halted by the circuit breaker",
            stop_reason="policy",
            ctx=ctx,
            sandbox_id=sandbox_id,
        )
        verdict = decide([], blocked=True, section=self.section, halted_before=True)
        self._emit(verdict, ctx, sandbox_id, skip_detection_block=False)
        return result, verdict

    def finish_episode(self, summary: EpisodeSummary, step: int | None = None) -> None:
        """Hand an episode's summary to the loggers (W&B, TensorBoard ...)."""
        metrics = summary.metrics()
        for log in self._loggers:
            log(metrics, step)

    def _emit(
        self, v: CallVerdict, ctx: TraceContext, sandbox_id: str, *, skip_detection_block: bool
    ) -> None:
        if not self._event_sinks:
            return
        for r in v.responses:
            if skip_detection_block and r.action == "block" and r.reason == "detection":
                continue  # the sandbox recorded this block itself
            ev = Event(
                host=self._host,
                sandbox_id=sandbox_id,
                ctx=ctx,
                data=PolicyDecision(action=r.action, reason=r.reason, detail=dict(r.detail)),
            )
            for sink in self._event_sinks:
                sink(ev)

    def reset_breaker(self) -> None:
        with self._lock:
            self._breaker.reset()
            self._bursts.tripped_runs.clear()
            self._raise_pending = None

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()


def metrics_of(summaries: Sequence[EpisodeSummary]) -> Mapping[str, float]:
    """Batch-level metrics: sums over episodes plus the quarantined fraction."""
    out: dict[str, float] = {}
    for s in summaries:
        for k, v in s.metrics().items():
            out[k] = out.get(k, 0.0) + v
    if summaries:
        out["corral/quarantined_fraction"] = sum(s.quarantined for s in summaries) / len(summaries)
    return out

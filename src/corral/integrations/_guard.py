"""The Guard: one per training run. It opens a guarded episode per rollout, runs each tool call in that
episode's sandbox, applies the Responder, and reports what the trainer must do.

Every framework adapter in this package is a thin shape over ``GuardedEpisode.call``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

from pydantic import BaseModel, ConfigDict

from corral.events import Event, EventStore, TraceContext
from corral.harness import Harness, SandboxLike
from corral.policy import Policy
from corral.respond import CallVerdict, EpisodeSummary, PenaltyRegistry, Responder, SummaryLogger
from corral.sandbox import ToolResult, new_id

# What a guarded episode runs calls in: the Sandbox interface every backend offers.
ToolExecutor = SandboxLike

SandboxFactory = Callable[[str], ToolExecutor]  # sandbox id -> a new sandbox


class StepReport(BaseModel):
    """Corral's part of one environment step, kept under one key (``info["corral"]``)."""

    model_config = ConfigDict(frozen=True)

    result: ToolResult
    verdict: CallVerdict
    quarantined: bool  # the trajectory so far: drop it from the update
    truncated: bool  # end the episode now (policy or halted run)

    @property
    def penalty(self) -> float:
        return self.verdict.penalty

    @property
    def observation(self) -> str:
        """What the agent sees: the output, or why the call did not run (never harness internals)."""
        r = self.result
        if r.blocked:
            return f"[corral] call blocked by policy: {r.block_reason or 'policy'}"
        text = r.stdout + (("\n" + r.stderr) if r.stderr else "")
        if r.stop_reason:
            text += f"\n[corral] call stopped: {r.stop_reason}"
        return text


class GuardedEpisode:
    """One episode: one sandbox, its trace context, and its safety summary."""

    def __init__(self, guard: Guard, sandbox: ToolExecutor, ctx: TraceContext) -> None:
        self.guard = guard
        self.sandbox = sandbox
        self.ctx = ctx
        self.summary = EpisodeSummary(run_id=ctx.run_id, episode_id=ctx.episode_id)
        self.turn = 0
        self.closed = False

    @property
    def quarantined(self) -> bool:
        return self.summary.quarantined

    @property
    def truncated(self) -> bool:
        return self.summary.ended_by_policy

    def call(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> StepReport:
        ctx = self.ctx.model_copy(update={"turn": self.turn, "tool_call_id": new_id("tc")})
        self.turn += 1
        responder = self.guard.responder
        if responder.halted or self.truncated:
            result, verdict = responder.refuse(ctx, self.sandbox.id)
        else:
            result = self.sandbox.run(command, ctx, timeout=timeout, stdin=stdin, env=env)
            verdict = responder.on_result(result)  # may raise CircuitBreakerTripped (action: raise)
        self.summary.add(result.alerts, result.blocked, verdict)
        return StepReport(
            result=result,
            verdict=verdict,
            quarantined=self.summary.quarantined,
            truncated=self.summary.ended_by_policy,
        )

    def close(self) -> EpisodeSummary:
        """Destroy the sandbox and log the summary; idempotent."""
        if not self.closed:
            self.closed = True
            try:
                self.sandbox.close()
            finally:
                self.guard.responder.finish_episode(self.summary, self.ctx.step)
        return self.summary

    def __enter__(self) -> GuardedEpisode:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Guard:
    """Corral for one training run: ``with guard.episode("e1", step=3) as ep: ep.call("pytest -q")``.

    By default sandboxes are local and share one Harness (rules compiled once, one
    egress proxy). Pass ``sandbox_factory`` to use a node service or a Ray pool.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        run_id: str | None = None,
        store: EventStore | None = None,
        event_sinks: Sequence[Callable[[Event], None]] = (),
        loggers: Sequence[SummaryLogger] = (),
        registry: PenaltyRegistry | None = None,
        sandbox_factory: SandboxFactory | None = None,
    ) -> None:
        self.policy = policy if policy is not None else Policy.default()
        self.run_id = run_id or new_id("run")
        self.store = store
        self._harness: Harness | None = None
        if sandbox_factory is None:
            self._harness = Harness(self.policy, store=store, sinks=event_sinks)
            harness = self._harness
            sandbox_factory = harness.sandbox
        self._factory = sandbox_factory
        sinks = list(event_sinks) + ([store.append] if store is not None else [])
        self.responder = Responder(self.policy, event_sinks=sinks, loggers=loggers, registry=registry)
        self._lock = threading.Lock()

    def episode(self, episode_id: str | None = None, *, step: int | None = None) -> GuardedEpisode:
        ctx = TraceContext(run_id=self.run_id, step=step, episode_id=episode_id or new_id("ep"))
        return GuardedEpisode(self, self._factory(new_id("sb")), ctx)

    @property
    def halted(self) -> bool:
        return self.responder.halted

    def close(self) -> None:
        self.responder.close()
        if self._harness is not None:
            self._harness.close()
        if self.store is not None:
            self.store.flush()

    def __enter__(self) -> Guard:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

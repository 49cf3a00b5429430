"""A guarded episode: one sandbox, its trace context, and its safety summary, sync or async.

``Episode.run`` / ``await AsyncEpisode.run`` run one tool call in the episode's
sandbox, apply the Responder and return a ``StepReport``: Corral's part of the
step, as one typed object that adapters put under one key (``info["corral"]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

from pydantic import BaseModel, ConfigDict

from corral.events import TraceContext
from corral.harness import AsyncSandboxLike, SandboxLike
from corral.respond import CallVerdict, EpisodeSummary
from corral.sandbox import ToolResult, new_id

if TYPE_CHECKING:
    from corral.integrations._guard import Guard

# What the agent reads when its episode is over: no rule, no reason it could learn to dodge.
EPISODE_OVER = "[corral] This command was not run: the episode has ended."


class StepReport(BaseModel):
    """Corral's part of one environment step, kept under one key (``info["corral"]``)."""

    model_config = ConfigDict(frozen=True)

    result: ToolResult
    verdict: CallVerdict
    quarantined: bool  # the trajectory so far: drop it from the update
    truncated: bool  # end the episode now (policy or halted run)

    @property
    def penalty(self) -> float:
        """This call's penalty, a magnitude: subtract it from the reward."""
        return self.verdict.penalty

    @property
    def observation(self) -> str:
        """What the agent sees: the call's output and Corral's neutral note (never a rule's name)."""
        return self.result.observation

    def outcome(self) -> tuple[object, ...]:
        """What the step decided, without provenance (ids, timings, resource figures)."""
        r = self.result
        rules = tuple(sorted(a.rule_id for a in r.alerts))
        return (r.exit_code, r.stdout, r.stderr, r.blocked, r.stop_reason, r.agent_message, rules,
                self.verdict, self.quarantined, self.truncated)  # fmt: skip

    def __eq__(self, other: object) -> bool:
        # Equal when they report the same outcome: the same action in two episodes with the same seed
        # gives equal steps (gymnasium's determinism check), though each call has its own ids and timing.
        if not isinstance(other, StepReport):
            return NotImplemented
        return self.outcome() == other.outcome()

    def __hash__(self) -> int:
        return hash(self.outcome())


class _EpisodeCore:
    """What sync and async episodes share: the context, the summary, and the verdict per call."""

    def __init__(self, guard: Guard, sandbox_id: str, ctx: TraceContext) -> None:
        self.guard = guard
        self.sandbox_id = sandbox_id
        self.ctx = ctx
        self.summary = EpisodeSummary(run_id=ctx.run_id, episode_id=ctx.episode_id)
        self.turn = 0
        self.closed = False

    @property
    def episode_id(self) -> str:
        return self.ctx.episode_id or ""

    @property
    def quarantined(self) -> bool:
        return self.summary.quarantined

    @property
    def truncated(self) -> bool:
        """The episode must end now: policy ended it or the run was halted."""
        return self.summary.ended_by_policy

    @property
    def penalty(self) -> float:
        """The episode's penalty so far (a magnitude)."""
        return self.summary.penalty

    def _next_ctx(self) -> TraceContext:
        ctx = self.ctx.model_copy(update={"turn": self.turn, "tool_call_id": new_id("tc")})
        self.turn += 1
        return ctx

    def _refusal(self, ctx: TraceContext) -> tuple[ToolResult, CallVerdict] | None:
        """A call that must not run: the run is halted, or this episode is over."""
        responder = self.guard.responder
        if self.closed:
            raise RuntimeError(f"episode {self.episode_id} is closed")
        if responder.halted:
            result, verdict = responder.refuse(ctx, self.sandbox_id)
            return result.model_copy(update={"agent_message": EPISODE_OVER}), verdict
        if self.truncated:
            result = ToolResult(
                exit_code=None,
                blocked=True,
                stop_reason="policy",
                block_reason="episode ended by policy",
                agent_message=EPISODE_OVER,
                ctx=ctx,
                sandbox_id=self.sandbox_id,
            )
            return result, CallVerdict(end_episode=True, quarantine=self.summary.quarantined)
        return None

    def _report(self, result: ToolResult, verdict: CallVerdict) -> StepReport:
        self.summary.add(result.alerts, result.blocked, verdict)
        return StepReport(
            result=result,
            verdict=verdict,
            quarantined=self.summary.quarantined,
            truncated=self.summary.ended_by_policy,
        )

    def _finish(self) -> None:
        self.guard._episode_closed()
        self.guard.responder.finish_episode(self.summary, self.ctx.step)


class Episode(_EpisodeCore):
    """A guarded episode for synchronous code: ``with guard.episode("e1") as ep: ep.run("pytest -q")``."""

    def __init__(self, guard: Guard, sandbox: SandboxLike, ctx: TraceContext) -> None:
        super().__init__(guard, sandbox.id, ctx)
        self.sandbox = sandbox

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> StepReport:
        """Run one tool call; ``CircuitBreakerTripped`` when the policy's breaker action is ``raise``."""
        ctx = self._next_ctx()
        refused = self._refusal(ctx)
        if refused is not None:
            return self._report(*refused)
        result = self.sandbox.run(command, ctx, timeout=timeout, stdin=stdin, env=env)
        return self._report(result, self.guard.responder.on_result(result))

    def close(self) -> EpisodeSummary:
        """Destroy the sandbox and hand the summary to the loggers; idempotent."""
        if not self.closed:
            self.closed = True
            try:
                self.sandbox.close()
            finally:
                self._finish()
        return self.summary

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncEpisode(_EpisodeCore):
    """A guarded episode for asyncio code: ``async with guard.async_episode("e1") as ep: await ep.run(...)``.

    The sandbox starts on first use (``start``, the first call or ``async with``), on the
    caller's event loop: thousands of episodes in one loop need no thread per call.
    """

    def __init__(self, guard: Guard, sandbox: AsyncSandboxLike, ctx: TraceContext) -> None:
        super().__init__(guard, sandbox.id, ctx)
        self.sandbox = sandbox

    async def start(self) -> Self:
        start = getattr(self.sandbox, "start", None)
        if start is not None:
            await start()
        return self

    async def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> StepReport:
        """Run one tool call; ``CircuitBreakerTripped`` when the policy's breaker action is ``raise``."""
        ctx = self._next_ctx()
        refused = self._refusal(ctx)
        if refused is not None:
            return self._report(*refused)
        result = await self.sandbox.run(command, ctx, timeout=timeout, stdin=stdin, env=env)
        return self._report(result, self.guard.responder.on_result(result))

    async def close(self) -> EpisodeSummary:
        """Destroy the sandbox and hand the summary to the loggers; idempotent."""
        if not self.closed:
            self.closed = True
            try:
                await self.sandbox.close()
            finally:
                self._finish()
        return self.summary

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

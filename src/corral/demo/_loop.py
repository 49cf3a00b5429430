"""The toy RL loop: episodes of a scripted agent, each in its own sandbox, several at once.

Before each call the loop asks the responder, as a trainer would: a call after the run
was halted is refused (and episodes not started yet never start); an episode that
attributed violations quarantined is ended there, which closes its sandbox and kills
whatever it left running. ``obey_halt=False`` (``corral demo --no-halt``) keeps going
after the breaker trips, to show what the run would have done without it.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from corral.demo._agent import TASK_FILES, TEST, Act, Misbehaviour, act_episodes, episode_plan
from corral.demo._store import RunStore
from corral.events import TraceContext
from corral.harness import Harness, Sandbox
from corral.respond import CallVerdict, Responder
from corral.sandbox import ToolResult

# The environment's own check: run the original tests from stdin, so editing the
# workspace's test file cannot earn reward.
TRUSTED_CHECK = "python3 - <<'EOF'\n" + TEST + "EOF"


@dataclass
class CallRecord:
    episode_id: str
    step: int
    turn: int
    command: str
    result: ToolResult
    misbehaviour: Misbehaviour | None
    start_s: float
    act: Act | None = None
    trusted: bool = False  # the environment's grader, not the agent
    refused: bool = False  # not run: the run was halted


@dataclass
class EpisodeOutcome:
    episode_id: str
    step: int
    reward: float = 0.0
    blocked: int = 0
    alerts: int = 0
    misbehaved: bool = False
    acts: tuple[str, ...] = ()
    calls: list[CallRecord] = field(default_factory=list)
    penalty: float = 0.0
    quarantined: bool = False
    truncated: bool = False
    ended_by: str | None = None  # quarantine, halt, end_episode, interrupted
    skipped: bool = False  # never started: the run was halted first
    sandbox_id: str | None = None
    sandbox_ip: str | None = None
    closed_s: float | None = None


@dataclass
class LoopStats:
    episodes: int = 0
    skipped: int = 0
    calls: int = 0
    blocked: int = 0
    refused: int = 0
    quarantined: int = 0
    truncated: int = 0
    alerts_by_category: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ep: EpisodeOutcome) -> None:
        with self.lock:
            if ep.skipped:
                self.skipped += 1
                return
            self.episodes += 1
            self.quarantined += int(ep.quarantined)
            self.truncated += int(ep.truncated)

    def add_call(self, c: CallRecord) -> None:
        with self.lock:
            self.calls += int(not c.trusted)
            self.blocked += int(c.result.blocked and not c.refused)
            self.refused += int(c.refused)
            self.alerts_by_category.update(a.category for a in c.result.alerts)


OnCall = Callable[[CallRecord, CallVerdict], None]
OnEpisode = Callable[[EpisodeOutcome, LoopStats], None]


@dataclass(frozen=True)
class LoopSettings:
    run_id: str
    episodes: int
    workers: int
    seed: int
    misbehave_rate: float
    episodes_per_step: int
    obey_halt: bool = True


class Loop:
    """One run: ``run()`` plays every episode; the callbacks see each call and episode as it ends."""

    def __init__(
        self,
        harness: Harness,
        responder: Responder,
        store: RunStore,
        settings: LoopSettings,
        *,
        on_call: OnCall | None = None,
        on_episode: OnEpisode | None = None,
    ) -> None:
        self.harness, self.responder, self.store, self.s = harness, responder, store, settings
        self.stats = LoopStats()
        self._on_call = on_call
        self._on_episode = on_episode
        self.acts = act_episodes(settings.episodes)
        self._stop = threading.Event()

    def run(self) -> list[EpisodeOutcome]:
        pool = ThreadPoolExecutor(max_workers=self.s.workers, thread_name_prefix="episode")
        try:
            futures = [pool.submit(self._one, i) for i in range(self.s.episodes)]
            return [f.result() for f in futures]
        except BaseException:  # Ctrl-C or a harness failure: no new episode, no new call
            self._stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)

    def _one(self, index: int) -> EpisodeOutcome:
        ep = self.episode(index)
        self.stats.add(ep)
        if self._on_episode is not None:
            self._on_episode(ep, self.stats)
        return ep

    def _halted(self) -> bool:
        return self.s.obey_halt and self.responder.halted

    def _record(self, out: EpisodeOutcome, rec: CallRecord, verdict: CallVerdict) -> None:
        out.calls.append(rec)
        self.stats.add_call(rec)
        if self._on_call is not None:
            self._on_call(rec, verdict)

    def episode(self, index: int) -> EpisodeOutcome:
        """One episode: the agent's calls, each judged by the responder, then the grader."""
        s = self.s
        episode_id, step = f"ep-{index:04d}", index // s.episodes_per_step
        acts = self.acts.get(index, ())
        out = EpisodeOutcome(episode_id, step, acts=tuple(a.name for a in acts))
        if self._halted() or self._stop.is_set():
            out.skipped = True
            return out
        rng = random.Random(s.seed * 100_003 + index)
        plan = episode_plan(rng, s.misbehave_rate, acts)
        out.misbehaved = any(p.misbehaviour or p.act for p in plan)
        with self.harness.sandbox() as sb:
            out.sandbox_id, out.sandbox_ip = sb.id, sb.sandbox_ip
            for path, text in TASK_FILES.items():
                sb.write_file(path, text)
            for act in acts:
                for path, text in act.staged.items():
                    sb.write_file(path, text, mode=0o755)
            turn = 0
            for turn, p in enumerate(plan):
                ctx = TraceContext(run_id=s.run_id, step=step, episode_id=episode_id, turn=turn)
                if self._stop.is_set():
                    out.truncated, out.ended_by = True, "interrupted"
                    break
                if self.responder.is_quarantined(s.run_id, episode_id):
                    out.quarantined = out.truncated = True
                    out.ended_by = "quarantine"
                    break
                t0 = time.time()
                if self._halted():
                    r, verdict = self.responder.refuse(ctx, sb.id)
                    self._record(
                        out, CallRecord(episode_id, step, turn, p.command, r, None, t0, refused=True), verdict
                    )
                    out.truncated, out.ended_by = True, "halt"
                    break
                r = sb.run(p.command, ctx, timeout=20)
                verdict = self.responder.on_result(r)
                self._record(
                    out, CallRecord(episode_id, step, turn, p.command, r, p.misbehaviour, t0, p.act), verdict
                )
                out.blocked += int(r.blocked)
                out.alerts += len(r.alerts)
                out.penalty += verdict.penalty
                out.quarantined |= verdict.quarantine
                if verdict.end_episode:
                    out.truncated, out.ended_by = True, "end_episode"
                    break
            if not out.truncated and self._halted():  # no grader either: nothing runs after a halt
                out.truncated, out.ended_by = True, "halt"
            if not out.truncated and self._stop.is_set():
                out.truncated, out.ended_by = True, "interrupted"
            if not out.truncated:
                out.reward = self._grade(sb, out, turn + 1)
        out.closed_s = time.time()
        out.reward -= out.penalty
        return out

    def _grade(self, sb: Sandbox, out: EpisodeOutcome, turn: int) -> float:
        call_id = f"tc-grader-{uuid.uuid4().hex[:8]}"
        self.store.expect_trusted(call_id)
        ctx = TraceContext(
            run_id=self.s.run_id, step=out.step, episode_id=out.episode_id, turn=turn, tool_call_id=call_id
        )
        t0 = time.time()
        check = sb.run(TRUSTED_CHECK, ctx, timeout=20)
        # Alerts a process the agent left running raised arrive with whichever result comes next.
        verdict = self.responder.on_result(check)
        out.penalty += verdict.penalty
        out.quarantined |= verdict.quarantine
        self._record(
            out,
            CallRecord(out.episode_id, out.step, turn, TRUSTED_CHECK, check, None, t0, trusted=True),
            verdict,
        )
        return 1.0 if check.exit_code == 0 else 0.0

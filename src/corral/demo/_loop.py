"""The toy RL loop: episodes of a scripted agent, each in its own sandbox, several at once."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from corral.demo._agent import TEST, Misbehaviour, episode_plan
from corral.events import TraceContext
from corral.harness import Harness
from corral.respond import Responder
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


@dataclass
class EpisodeOutcome:
    episode_id: str
    step: int
    reward: float
    blocked: int
    alerts: int
    misbehaved: bool
    calls: list[CallRecord] = field(default_factory=list)
    penalty: float = 0.0
    quarantined: bool = False
    truncated: bool = False


@dataclass
class LoopStats:
    episodes: int = 0
    calls: int = 0
    blocked: int = 0
    quarantined: int = 0
    truncated: int = 0
    alerts_by_category: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ep: EpisodeOutcome) -> None:
        with self.lock:
            self.episodes += 1
            self.calls += len(ep.calls)
            self.blocked += ep.blocked
            self.quarantined += int(ep.quarantined)
            self.truncated += int(ep.truncated)
            for c in ep.calls:
                self.alerts_by_category.update(a.category for a in c.result.alerts)


def run_episode(
    harness: Harness, responder: Responder, run_id: str, index: int, step: int, seed: int, rate: float
) -> EpisodeOutcome:
    """One episode: the agent's calls, each judged by the responder (penalty, quarantine, truncation)."""
    rng = random.Random(seed * 100_003 + index)
    episode_id = f"ep-{index:04d}"
    plan = episode_plan(rng, rate)
    out = EpisodeOutcome(episode_id, step, 0.0, 0, 0, any(s.misbehaviour for s in plan))
    with harness.sandbox() as sb:
        for turn, s in enumerate(plan):
            ctx = TraceContext(run_id=run_id, step=step, episode_id=episode_id, turn=turn)
            t0 = time.time()
            if responder.halted:
                r, verdict = responder.refuse(ctx, sb.id)
            else:
                r = sb.run(s.command, ctx, timeout=10)
                verdict = responder.on_result(r)
            out.calls.append(CallRecord(episode_id, step, turn, s.command, r, s.misbehaviour, t0))
            out.blocked += int(r.blocked)
            out.alerts += len(r.alerts)
            out.penalty += verdict.penalty
            out.quarantined |= verdict.quarantine
            if verdict.end_episode:
                out.truncated = True
                break
        if not out.truncated:
            check = sb.run(
                TRUSTED_CHECK, TraceContext(run_id=run_id, step=step, episode_id=episode_id, turn=turn + 1)
            )
            out.reward = 1.0 if check.exit_code == 0 else 0.0
    out.reward -= out.penalty
    return out


def run_loop(
    harness: Harness,
    responder: Responder,
    *,
    run_id: str,
    episodes: int,
    workers: int,
    seed: int,
    misbehave_rate: float,
    episodes_per_step: int,
    on_episode: Callable[[EpisodeOutcome, LoopStats], None],
) -> tuple[list[EpisodeOutcome], LoopStats]:
    stats = LoopStats()
    results: list[EpisodeOutcome] = []

    def one(i: int) -> EpisodeOutcome:
        ep = run_episode(harness, responder, run_id, i, i // episodes_per_step, seed, misbehave_rate)
        stats.add(ep)
        on_episode(ep, stats)
        return ep

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="episode") as pool:
        results = list(pool.map(one, range(episodes)))
    return results, stats

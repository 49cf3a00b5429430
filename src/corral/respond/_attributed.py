"""Bursts of attributed violations: per-episode and per-run sliding windows; pure (times are given).

Infrastructure logs arrive late and out of order (several files, several
clocks), so the windows run on the records' own times and keep them sorted.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from corral.policy import AttributedSection

_Key = tuple[str, str]


@dataclass
class _Window:
    span_s: float
    times: list[float] = field(default_factory=list)

    def add(self, t: float) -> int:
        """Insert ``t``; the most times any window of ``span_s`` holding ``t`` holds."""
        ts = self.times
        bisect.insort(ts, t)
        del ts[: bisect.bisect_left(ts, ts[-1] - 2 * self.span_s)]  # bounded memory
        best = 0
        for i in range(bisect.bisect_left(ts, t - self.span_s), bisect.bisect_right(ts, t)):
            best = max(best, bisect.bisect_right(ts, ts[i] + self.span_s) - i)
        return best


@dataclass(frozen=True)
class BurstResult:
    """What one attributed violation did: the counts in its windows and which thresholds it crossed."""

    episode_count: int
    run_count: int
    quarantine: bool  # this violation made the episode's burst (it was not quarantined before)
    trip: bool  # this violation made the run's burst


class AttributedBursts:
    """Counts attributed violations per episode and per run; says when a threshold is crossed first."""

    def __init__(self, section: AttributedSection) -> None:
        self.section = section
        self._episodes: dict[_Key, _Window] = {}
        self._runs: dict[str, _Window] = {}
        self.quarantined: set[_Key] = set()
        self.tripped_runs: set[str] = set()

    def add(
        self, run_id: str | None, episode_id: str | None, t: float, *, episode_counts: bool
    ) -> BurstResult:
        s = self.section
        ep_n = run_n = 0
        quarantine = trip = False
        if episode_counts and episode_id is not None:
            key = (run_id or "", episode_id)
            ep_n = self._episodes.setdefault(key, _Window(s.episode_window_s)).add(t)
            if ep_n >= s.episode_threshold and key not in self.quarantined:
                self.quarantined.add(key)
                quarantine = True
        if run_id is not None:
            run_n = self._runs.setdefault(run_id, _Window(s.run_window_s)).add(t)
            if run_n >= s.run_threshold and run_id not in self.tripped_runs:
                self.tripped_runs.add(run_id)
                trip = True
        return BurstResult(ep_n, run_n, quarantine, trip)

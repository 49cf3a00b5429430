"""The circuit breaker: a sliding window over alert times; pure, the caller passes the clock."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from corral.events import Alert, Level
from corral.policy import CircuitBreakerSection


class CircuitBreaker:
    """Trips when more than ``threshold - 1`` alerts at or above ``min_level`` arrive within ``window_s``.

    Once tripped it stays tripped (a halted run stays halted) until ``reset()``.
    """

    def __init__(self, section: CircuitBreakerSection) -> None:
        self.section = section
        self._floor = Level(section.min_level).rank
        self._times: deque[float] = deque()
        self.tripped = False

    def feed(self, alerts: Sequence[Alert], now_s: float) -> bool:
        """Count this call's alerts; True only on the call that trips the breaker."""
        if not self.section.enabled or self.tripped:
            return False
        n = sum(1 for a in alerts if a.level.rank >= self._floor)
        horizon = now_s - self.section.window_s
        while self._times and self._times[0] <= horizon:
            self._times.popleft()
        self._times.extend([now_s] * n)
        if len(self._times) >= self.section.threshold:
            self.tripped = True
            return True
        return False

    def trip(self) -> bool:
        """Trip it from outside (a burst of attributed violations); True if it was not tripped yet."""
        if not self.section.enabled or self.tripped:
            return False
        self.tripped = True
        return True

    @property
    def in_window(self) -> int:
        return len(self._times)

    def reset(self) -> None:
        self._times.clear()
        self.tripped = False

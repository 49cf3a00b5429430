"""The notifier: groups alert events and hands notifications to the sinks from its own thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence

from corral.events import Event
from corral.policy import GroupingSection
from corral.respond._group import AlertGrouper, Notification
from corral.respond._sinks import AlertSink


class Notifier:
    """``publish`` never blocks on a sink; a burst within the grouping window becomes one notification."""

    def __init__(
        self,
        grouping: GroupingSection,
        sinks: Sequence[AlertSink],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sinks = list(sinks)
        self._grouper = AlertGrouper(grouping)
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self.sent = 0
        tick = grouping.window_s / 4 if grouping.window_s > 0 else 0.05
        self._tick = min(max(tick, 0.02), 0.5)
        self._thread = threading.Thread(target=self._loop, name="corral-notifier", daemon=True)
        self._thread.start()

    def publish(self, events: Sequence[Event]) -> None:
        alerts = [e for e in events if e.data.kind == "alert"]
        if not alerts:
            return
        with self._lock:
            self._grouper.add(alerts, self._clock())

    def flush(self) -> None:
        """Send every open group now (shutdown, tests)."""
        with self._lock:
            due = self._grouper.due(self._clock(), flush_all=True)
        self._send(due)

    def _loop(self) -> None:
        while not self._wake.wait(self._tick):
            with self._lock:
                due = self._grouper.due(self._clock())
            self._send(due)

    def _send(self, due: list[Notification]) -> None:
        for n in due:
            for sink in self.sinks:
                if n.level.rank >= sink.min_level.rank:
                    with contextlib.suppress(Exception):  # one broken sink must not silence the others
                        sink.send(n)
            self.sent += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()
        for sink in self.sinks:
            sink.close()

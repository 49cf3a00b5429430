"""The resource collector: per-call CPU, memory and pids from the call's cgroups.

One thread samples every live call each ``interval_s``. A call that lives past
one interval gets a ``ResourceSample`` time series; every call gets a final
sample (``final=True``) when it ends. A call that keeps at least
``miner_min_cores`` busy for ``miner_window_s`` gets a ``PolicyDecision``
(action ``flag``, reason ``sustained_cpu``) once: the shape of a miner.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from corral.events import Alert, Event, Health, Level, Payload, PolicyDecision, ResourceSample
from corral.monitor._cgstats import SustainedCpu, Usage, read_usage
from corral.sandbox import CallScope

Emit = Callable[[Event], None]
COMPONENT = "monitor.resources"


@dataclass
class _Live:
    scope: CallScope
    started: float
    miner: SustainedCpu
    pids_peak: int = 0
    samples: int = field(default=0)
    lingering: bool = False  # the call returned; processes it left (episode mode) are still sampled


def _miner_alert(c: _Live, detail: dict[str, object]) -> Alert:
    """Sustained CPU is the shape of a miner. In a call it may be a build (an alert, medium); from a
    process its call left behind, with nobody waiting for it, it is what a hidden miner looks like."""
    if c.lingering:
        return Alert(
            rule_id="corral.monitor.background_sustained_cpu",
            title="Process left running by a call keeps the CPU busy (miner-shaped)",
            level=Level.high,
            category="cryptomining",
            tags=["attack.impact", "attack.t1496"],
            matched=dict(detail),
        )
    return Alert(
        rule_id="corral.monitor.sustained_cpu",
        title="Call keeps the CPU busy for a long time (miner-shaped)",
        level=Level.medium,
        category="cryptomining",
        tags=["attack.impact", "attack.t1496"],
        matched=dict(detail),
    )


class ResourceCollector:
    """A ``CallObserver`` emitting ResourceSample events (and a flag for miner-shaped calls)."""

    def __init__(
        self,
        emit: Emit,
        *,
        host: str | None = None,
        interval_s: float = 1.0,
        miner_min_cores: float = 0.8,
        miner_window_s: float = 30.0,
    ) -> None:
        self._emit = emit
        self._host = host or socket.gethostname()
        self._interval_s = interval_s
        self._miner = (miner_min_cores, miner_window_s)
        self._lock = threading.Lock()
        self._live: dict[int, _Live] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="corral-resources", daemon=True)
        self._thread.start()

    def call_started(self, scope: CallScope) -> None:
        with self._lock:
            self._live[scope.cgroup_id] = _Live(scope, time.monotonic(), SustainedCpu(*self._miner))

    async def call_finished(self, scope: CallScope, *, lingering: bool = False) -> None:
        """The call returned. Its final sample now; in episode mode processes it left keep being
        sampled (and flagged when miner-shaped) under the same call until ``scope_released``."""
        if not lingering:
            # The final read is a few cgroup files, read here: a worker thread's hand-over cost a
            # warm call more than the reads (0.1-0.2 ms), and a burst of calls more CPU.
            self.scope_released(scope)
            return
        with self._lock:
            live = self._live.get(scope.cgroup_id)
            if live is not None:
                live.lingering = True

    def scope_released(self, scope: CallScope) -> None:
        with self._lock:
            live = self._live.pop(scope.cgroup_id, None)
        if live is None:
            return
        u = read_usage(scope.cgroup_paths)
        self._sample(live, u, final=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def __enter__(self) -> ResourceCollector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, scope: CallScope | None, data: Payload) -> None:
        if scope is None:
            self._emit(Event(host=self._host, data=data))
        else:
            self._emit(Event(host=self._host, sandbox_id=scope.sandbox_id, ctx=scope.ctx, data=data))

    def _sample(self, live: _Live, u: Usage, *, final: bool) -> None:
        live.pids_peak = max(live.pids_peak, u.pids, u.pids_peak or 0)
        self._send(
            live.scope,
            ResourceSample(
                cpu_time_s=u.cpu_time_s,
                memory_bytes=u.memory_bytes,
                memory_peak_bytes=u.memory_peak_bytes,
                pids=live.pids_peak if final else u.pids,
                final=final,
            ),
        )
        live.samples += 1

    def _tick(self) -> None:
        with self._lock:
            live = list(self._live.values())
        now = time.monotonic()
        for c in live:
            u = read_usage(c.scope.cgroup_paths)
            if c.miner.feed(now - c.started, u.cpu_time_s):
                detail = {
                    "kind": "sustained_cpu",
                    "cpu_time_s": round(u.cpu_time_s, 3),
                    "busy_for_s": round(c.miner.busy_for_s, 3),
                }
                reason = f"sustained CPU >= {c.miner.min_cores} cores for {c.miner.window_s:g}s"
                self._send(c.scope, PolicyDecision(action="flag", reason=reason, detail=detail))
                self._send(c.scope, _miner_alert(c, detail))
            if now - c.started >= self._interval_s:
                self._sample(c, u, final=False)
            else:
                c.pids_peak = max(c.pids_peak, u.pids)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._tick()
            except Exception as exc:  # a collector that dies must say so, never fall silent
                self._send(None, Health(component=COMPONENT, status="failed", message=repr(exc)))
                return

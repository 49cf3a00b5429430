"""The GPU collector: per-call GPU accounting from a GPU source, GPU misuse alerts, and GPU limits.

Each poll attributes every GPU process to the call whose cgroup holds it and emits a
``GpuUsage`` event under that call's trace context. A call's GPU time is the sum over
polls of each of its processes' SM utilisation times the time since the previous poll
(a process NVML reports without utilisation, as on MIG, counts as fully busy), so its
resolution is the poll interval. Alerts, each once per call and tied to it:

- ``corral.monitor.gpu_without_grant`` (critical): GPU compute by a call of a sandbox with no
  GPU grant, or on a device outside its grant. The device nodes make this impossible; seeing it
  means the confinement failed.
- ``corral.monitor.gpu_budget`` (high): the call, or its sandbox in all, used more GPU time than
  the policy's budget; the call is stopped (``gpu_budget``).
- ``corral.monitor.gpu_memory`` (high): the call held more GPU memory than allowed; stopped.
- ``corral.monitor.gpu_after_call`` (high): GPU work by processes a call left running (episode
  mode), with nobody waiting for it: the shape of a hidden miner.
- ``corral.monitor.gpu_miner`` (critical): a GPU process whose program, command line or
  network behaviour looks like a miner (decided by the ``miner_check`` the harness gives).

If the source fails, the collector is failed for good: granted calls are stopped with
``gpu_monitor_failure`` (or, when their sandbox's policy says ``warn``, alerted and left running).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from corral.events import Alert, Event, GpuUsage, Health, Level, Payload, PolicyDecision
from corral.monitor._gpu import GpuSample, GpuSource, NvmlSource, classify
from corral.sandbox import CallScope

Emit = Callable[[Event], None]
MinerCheck = Callable[[CallScope, GpuSample], Sequence[str]]
COMPONENT = "monitor.gpu"
BUSY_AFTER_CALL_PCT = 5.0  # utilisation above this, after the call returned, is work going on
_SUMMARIES_KEPT = 4096


@dataclass(frozen=True)
class GpuLimits:
    """A sandbox's GPU grant as the collector checks it."""

    devices: frozenset[tuple[int, int | None, int | None]]  # (gpu index, MIG gi, MIG ci); gi None: whole GPU
    compute_budget_s: float | None = None
    episode_compute_budget_s: float | None = None
    memory_max_bytes: int | None = None
    on_failure: Literal["stop", "warn"] = "stop"

    def allows(self, s: GpuSample) -> bool:
        for index, gi, ci in self.devices:
            if index != s.gpu_index:
                continue
            if gi is None or s.gi is None or (gi, ci) == (s.gi, s.ci):  # NVML without instance ids: the GPU
                return True
        return False


@dataclass(frozen=True)
class GpuCallSummary:
    gpu_time_s: float
    memory_peak_bytes: int | None
    stop_reason: Literal["gpu_budget", "gpu_memory", "gpu_monitor_failure"] | None = None


@dataclass
class _Call:
    scope: CallScope
    started: float
    gpu_time_s: float = 0.0
    memory_peak: int | None = None
    lingering: bool = False
    finishing: bool = False  # the call's command returned and nothing of it lives on: nothing to stop
    stop: Literal["gpu_budget", "gpu_memory", "gpu_monitor_failure"] | None = None
    raised: set[str] = field(default_factory=set)


@dataclass
class _Sandbox:
    limits: GpuLimits
    gpu_time_s: float = 0.0


def _alert(rule: str, title: str, level: Level, category: str, matched: dict[str, object]) -> Alert:
    return Alert(
        rule_id=f"corral.monitor.{rule}",
        title=title,
        level=level,
        category=category,
        tags=["attack.impact", "attack.t1496"],
        matched=matched,
    )


class GpuCollector:
    """Polls a GPU source (see the module docstring); a ``CallObserver``."""

    def __init__(
        self,
        emit: Emit,
        *,
        declared_pids: Callable[[], set[int]] = set,
        source: GpuSource | None = None,
        host: str | None = None,
        unified_root: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        miner_check: MinerCheck | None = None,
    ) -> None:
        self._emit = emit
        self._declared = declared_pids
        self._source = source if source is not None else NvmlSource.open()
        self._host = host or socket.gethostname()
        self._root = unified_root if unified_root is not None else v2_root()
        self._clock = clock
        self._miner_check = miner_check
        self._calls: dict[str, CallScope] = {}
        self._live: dict[int, _Call] = {}  # by cgroup id
        self._sandboxes: dict[str, _Sandbox] = {}
        self._summaries: OrderedDict[str, GpuCallSummary] = OrderedDict()
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._flagged: set[tuple[str | None, int]] = set()
        self._failure: str | None = None
        self._prev_poll: float | None = None
        self._emit(Event(host=self._host, data=Health(component=COMPONENT, status="ok", message=self.status)))

    @property
    def status(self) -> str:
        return self._source.status

    @property
    def available(self) -> bool:
        return self._source.status == "ok" and self._failure is None

    @property
    def failure(self) -> str | None:
        """Why granted calls cannot be watched now (the source is missing or broke), or None."""
        if self._failure is not None:
            return self._failure
        return None if self._source.status == "ok" else self._source.status

    # -- grants ----------------------------------------------------------------------------------

    def grant(self, sandbox_id: str, limits: GpuLimits) -> None:
        with self._lock:
            self._sandboxes[sandbox_id] = _Sandbox(limits)

    def revoke(self, sandbox_id: str) -> None:
        with self._lock:
            self._sandboxes.pop(sandbox_id, None)

    # -- CallObserver ----------------------------------------------------------------------------

    def call_started(self, scope: CallScope) -> None:
        unified = scope.cgroup_paths.get("unified")
        if unified is None:
            return
        try:
            rel = "/" + str(unified.relative_to(self._root))
        except ValueError:
            rel = str(unified)  # not under the v2 mount this collector knows: match nothing by accident
        with self._lock:
            self._calls[rel] = scope
            self._live[scope.cgroup_id] = _Call(scope, self._clock())

    async def call_finished(self, scope: CallScope, *, lingering: bool = False) -> None:
        """A last look while the call's processes are accounted to it (episode survivors stay watched)."""
        with self._lock:
            c = self._live.get(scope.cgroup_id)
            if c is not None:
                c.finishing = not lingering
        self.poll()
        with self._lock:
            c = self._live.get(scope.cgroup_id)
            if c is None:
                return
            c.lingering = lingering
            tcid = scope.ctx.tool_call_id or str(scope.cgroup_id)
            self._summaries[tcid] = GpuCallSummary(round(c.gpu_time_s, 6), c.memory_peak, c.stop)
            while len(self._summaries) > _SUMMARIES_KEPT:  # a caller that never takes them
                self._summaries.popitem(last=False)

    def scope_released(self, scope: CallScope) -> None:
        with self._lock:
            self._calls = {k: v for k, v in self._calls.items() if v.cgroup_id != scope.cgroup_id}
            self._live.pop(scope.cgroup_id, None)

    def take_summary(self, tool_call_id: str) -> GpuCallSummary | None:
        """The GPU use of a call that has finished (once)."""
        with self._lock:
            return self._summaries.pop(tool_call_id, None)

    # -- polling ---------------------------------------------------------------------------------

    def fail(self, reason: str) -> None:
        """The source broke: say so, and stop (or warn) every granted call now running."""
        with self._lock:
            if self._failure is not None:
                return
            self._failure = reason
            live = [(c, self._sandboxes.get(c.scope.sandbox_id)) for c in self._live.values()]
        self._send(None, Health(component=COMPONENT, status="failed", message=reason))
        for c, sb in live:
            if sb is None:
                continue
            detail: dict[str, object] = {"kind": "gpu_monitor_failure", "error": reason}
            if sb.limits.on_failure == "stop":
                self._stop(c, "gpu_monitor_failure")
                title = "GPU monitor failed; the call holding a GPU was stopped"
            else:
                title = "GPU monitor failed; the call holding a GPU runs unwatched"
            self._raise(c, "gpu_monitor_failure", title, Level.medium, "monitor_failure", detail)

    def poll(self) -> int:
        """Read the source once and emit its events; returns how many GPU processes were seen."""
        with self._poll_lock:  # the poller thread and call_finished may poll at once
            if self._failure is not None:
                return 0
            try:
                samples = self._source.read()
            except Exception as exc:  # any failure of the source: fail closed
                self.fail(f"GPU source failed: {exc}")
                return 0
            now = self._clock()
            with self._lock:
                calls, live = dict(self._calls), dict(self._live)
                prev, self._prev_poll = self._prev_poll, now
            self._account(samples, classify(samples, self._declared(), calls), live, now, prev)
            return len(samples)

    def _account(
        self,
        samples: list[GpuSample],
        usages: list[tuple[CallScope | None, GpuUsage]],
        live: dict[int, _Call],
        now: float,
        prev: float | None,
    ) -> None:
        """``now - prev`` is the time each sample stands for (since the call began, if later)."""
        memory: dict[int, int] = {}
        touched: set[str] = set()
        for sample, (scope, usage) in zip(samples, usages, strict=True):
            call = live.get(scope.cgroup_id) if scope is not None else None
            sb = self._sandboxes.get(scope.sandbox_id) if scope is not None else None
            granted = sb is not None and sb.limits.allows(sample)
            if granted:
                usage = usage.model_copy(update={"declared": True})
            self._send(scope, usage)
            if scope is None or call is None:
                self._flag_undeclared(scope, usage)
                continue
            if not granted:
                self._flag_undeclared(scope, usage)
                where = "with no GPU grant" if sb is None else "on a GPU outside its grant"
                self._raise(
                    call,
                    "gpu_without_grant",
                    f"GPU compute by a call {where}",
                    Level.critical,
                    "cryptomining",
                    _seen(sample),
                )
            busy = 1.0 if sample.sm_util_pct is None else max(0.0, min(sample.sm_util_pct, 100.0)) / 100.0
            since = call.started if prev is None or call.started > prev else prev
            used = busy * max(0.0, now - since)
            touched.add(call.scope.sandbox_id)
            with self._lock:
                call.gpu_time_s += used
                if sb is not None:
                    sb.gpu_time_s += used
            cid = call.scope.cgroup_id
            memory[cid] = memory.get(cid, 0) + (sample.used_memory_bytes or 0)
            if call.lingering and (sample.sm_util_pct is None or sample.sm_util_pct > BUSY_AFTER_CALL_PCT):
                self._raise(
                    call,
                    "gpu_after_call",
                    "GPU work continues after its call returned (miner-shaped)",
                    Level.high,
                    "cryptomining",
                    _seen(sample),
                )
            evidence = list(self._miner_check(call.scope, sample)) if self._miner_check else []
            if evidence:
                self._raise(
                    call,
                    "gpu_miner",
                    "GPU process looks like a cryptocurrency miner",
                    Level.critical,
                    "cryptomining",
                    {**_seen(sample), "evidence": evidence},
                )
        for cid, mem in memory.items():
            c = live[cid]
            c.memory_peak = max(c.memory_peak or 0, mem)
        if touched:  # only sandboxes that used a GPU in this poll can have gone over a limit
            for c in live.values():
                if c.scope.sandbox_id in touched:
                    self._check_limits(c)

    def _check_limits(self, c: _Call) -> None:
        sb = self._sandboxes.get(c.scope.sandbox_id)
        if sb is None or c.stop is not None:
            return
        lim = sb.limits
        over: dict[str, object] = {}
        if lim.compute_budget_s is not None and c.gpu_time_s > lim.compute_budget_s:
            over["compute_budget_s"] = lim.compute_budget_s
        elif lim.episode_compute_budget_s is not None and sb.gpu_time_s > lim.episode_compute_budget_s:
            over["episode_compute_budget_s"] = lim.episode_compute_budget_s
        elif lim.memory_max_bytes is not None and (c.memory_peak or 0) > lim.memory_max_bytes:
            over["memory_max_bytes"] = lim.memory_max_bytes
        else:
            return
        detail: dict[str, object] = {
            "gpu_time_s": round(c.gpu_time_s, 3),
            "episode_gpu_time_s": round(sb.gpu_time_s, 3),
            "gpu_memory_peak_bytes": c.memory_peak,
            **over,
        }
        if "memory_max_bytes" in over:
            self._stop(c, "gpu_memory")
            self._raise(c, "gpu_memory", "GPU memory limit hit", Level.high, "resource_abuse", detail)
            return
        self._stop(c, "gpu_budget")
        self._raise(c, "gpu_budget", "GPU kept busy beyond its budget", Level.high, "resource_abuse", detail)

    def _stop(self, c: _Call, reason: Literal["gpu_budget", "gpu_memory", "gpu_monitor_failure"]) -> None:
        """Kill every process of the call (``cgroup.kill``); the call's result says why."""
        if c.stop is not None or c.finishing:
            return
        c.stop = reason
        if c.lingering:  # no result will carry it: the decision is the record
            self._send(c.scope, PolicyDecision(action="kill", reason=reason, detail={"lingering": True}))
        paths = c.scope.cgroup_paths
        unified = paths.get("unified")
        if unified is not None:
            with contextlib.suppress(OSError):
                (unified / "cgroup.kill").write_text("1")
        for p in paths.values():  # kernels without cgroup.kill, and the v1 hierarchies
            with contextlib.suppress(OSError, ValueError):
                for pid in (p / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), 9)

    def _raise(
        self, c: _Call, rule: str, title: str, level: Level, category: str, matched: dict[str, object]
    ) -> None:
        if rule in c.raised:
            return
        c.raised.add(rule)
        self._send(c.scope, _alert(rule, title, level, category, matched))

    def _flag_undeclared(self, scope: CallScope | None, usage: GpuUsage) -> None:
        key = (scope.sandbox_id if scope else None, usage.ProcessId)
        if usage.declared or key in self._flagged:
            return
        self._flagged.add(key)
        where = f"sandbox {scope.sandbox_id}" if scope else "the host"
        decision = PolicyDecision(
            action="flag",
            reason=f"GPU compute by pid {usage.ProcessId} in {where}, not in the declared workload",
            detail={"kind": "undeclared_gpu_compute", "gpu_index": usage.gpu_index},
        )
        self._send(scope, decision)

    def _send(self, scope: CallScope | None, data: Payload) -> None:
        if scope is None:
            self._emit(Event(host=self._host, data=data))
        else:
            self._emit(Event(host=self._host, sandbox_id=scope.sandbox_id, ctx=scope.ctx, data=data))


def v2_root(mounts: Path = Path("/proc/self/mounts")) -> Path:
    """Where the cgroup v2 hierarchy is mounted (``/proc/<pid>/cgroup`` paths are relative to it):
    /sys/fs/cgroup/unified on a hybrid layout, /sys/fs/cgroup on a unified one."""
    with contextlib.suppress(OSError):
        for line in mounts.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return Path(parts[1].replace("\\040", " "))
    return Path("/sys/fs/cgroup")


def _seen(s: GpuSample) -> dict[str, object]:
    out: dict[str, object] = {"gpu_index": s.gpu_index, "ProcessId": s.pid}
    for k, v in (("Image", s.image), ("CommandLine", s.cmdline), ("sm_util_pct", s.sm_util_pct)):
        if v is not None:
            out[k] = v
    if s.gi is not None:
        out["gpu_instance_id"], out["compute_instance_id"] = s.gi, s.ci
    return out

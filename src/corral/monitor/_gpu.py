"""The GPU collector: per-process GPU use through NVML, flagging compute outside the declared workload.

NVML comes from the optional extra ``gpu`` (nvidia-ml-py). Without the module,
driver or a device, ``NvmlSource.open`` returns a source whose ``status`` says
"no GPU: ..." and which yields no samples: that is a state, not an error.
``ReplaySource`` plays back recorded samples (JSON) through the same
interface; the classification logic is the same for both.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from corral.events import Event, GpuUsage, Health, PolicyDecision
from corral.sandbox import CallScope

Emit = Callable[[Event], None]
COMPONENT = "monitor.gpu"


@dataclass(frozen=True)
class GpuSample:
    gpu_index: int
    pid: int
    used_memory_bytes: int | None
    sm_util_pct: float | None
    cgroup: str | None = None  # the process's v2 cgroup path ("0::" line of /proc/<pid>/cgroup)


class GpuSource(Protocol):
    status: str  # "ok", or "no GPU: <why>"

    def read(self) -> list[GpuSample]: ...


class NvmlSource:
    """Live NVML readings; degrade to "no GPU" when NVML or a device is absent."""

    def __init__(self, nvml: Any, status: str) -> None:
        self._nvml = nvml
        self.status = status

    @classmethod
    def open(cls) -> NvmlSource:
        try:
            import pynvml
        except ImportError:
            return cls(None, "no GPU: nvidia-ml-py is not installed (pip install 'corral[gpu]')")
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as exc:
            return cls(None, f"no GPU: NVML unavailable ({exc})")
        if count == 0:
            return cls(None, "no GPU: NVML found no devices")
        return cls(pynvml, "ok")

    def read(self) -> list[GpuSample]:
        nv = self._nvml
        if nv is None:
            return []
        out: list[GpuSample] = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            util: dict[int, float] = {}
            try:
                for u in nv.nvmlDeviceGetProcessUtilization(h, 0):
                    util[int(u.pid)] = float(u.smUtil)
            except nv.NVMLError:
                pass  # not supported on every device; memory use still shows compute
            for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                mem = p.usedGpuMemory if isinstance(p.usedGpuMemory, int) else None
                pid = int(p.pid)
                out.append(GpuSample(i, pid, mem, util.get(pid), _cgroup_of(pid)))
        return out


class ReplaySource:
    """Recorded NVML samples: a JSON list of rounds, each a list of sample objects."""

    def __init__(self, rounds: Iterable[list[GpuSample]], status: str = "ok") -> None:
        self._rounds = list(rounds)
        self.status = status

    @classmethod
    def load(cls, path: str | Path) -> ReplaySource:
        data = json.loads(Path(path).read_text())
        rounds = [[GpuSample(**s) for s in r] for r in data["rounds"]]
        return cls(rounds, data.get("status", "ok"))

    def read(self) -> list[GpuSample]:
        return self._rounds.pop(0) if self._rounds else []


def _cgroup_of(pid: int) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        return None
    return None


def classify(
    samples: Iterable[GpuSample], declared_pids: set[int], calls: Mapping[str, CallScope]
) -> list[tuple[CallScope | None, GpuUsage]]:
    """Each sample as GpuUsage, with the call whose cgroup (v2 path) holds the process, if any.

    ``calls`` maps a unified cgroup path relative to the v2 root ("/corral/sb/call") to its scope.
    A process in a sandbox is never part of the declared workload, whatever its pid.
    """
    out: list[tuple[CallScope | None, GpuUsage]] = []
    for s in samples:
        scope = None
        if s.cgroup is not None:
            scope = next(
                (sc for cg, sc in calls.items() if s.cgroup == cg or s.cgroup.startswith(cg + "/")), None
            )
        declared = scope is None and s.pid in declared_pids
        usage = GpuUsage(
            gpu_index=s.gpu_index,
            ProcessId=s.pid,
            used_memory_bytes=s.used_memory_bytes,
            sm_util_pct=s.sm_util_pct,
            declared=declared,
        )
        out.append((scope, usage))
    return out


class GpuCollector:
    """Polls a GPU source; emits GpuUsage per process and a flag for undeclared GPU compute."""

    def __init__(
        self,
        emit: Emit,
        *,
        declared_pids: Callable[[], set[int]] = set,
        source: GpuSource | None = None,
        host: str | None = None,
        unified_root: Path = Path("/sys/fs/cgroup/unified"),
    ) -> None:
        self._emit = emit
        self._declared = declared_pids
        self._source = source if source is not None else NvmlSource.open()
        self._host = host or socket.gethostname()
        self._root = unified_root
        self._calls: dict[str, CallScope] = {}
        self._lock = threading.Lock()
        self._flagged: set[tuple[str | None, int]] = set()
        self._emit(Event(host=self._host, data=Health(component=COMPONENT, status="ok", message=self.status)))

    @property
    def status(self) -> str:
        return self._source.status

    @property
    def available(self) -> bool:
        return self._source.status == "ok"

    def call_started(self, scope: CallScope) -> None:
        unified = scope.cgroup_paths.get("unified")
        if unified is not None:
            with self._lock:
                self._calls["/" + str(unified.relative_to(self._root))] = scope

    async def call_finished(self, scope: CallScope, *, lingering: bool = False) -> None:
        """A last look while the call's processes are accounted to it (episode survivors stay watched)."""
        self.poll()

    def scope_released(self, scope: CallScope) -> None:
        with self._lock:
            self._calls = {k: v for k, v in self._calls.items() if v.cgroup_id != scope.cgroup_id}

    def poll(self) -> int:
        """Read the source once and emit its events; returns how many GPU processes were seen."""
        samples = self._source.read()
        with self._lock:
            calls = dict(self._calls)
        declared = self._declared()
        for scope, usage in classify(samples, declared, calls):
            ev_scope = {"sandbox_id": scope.sandbox_id, "ctx": scope.ctx} if scope else {}
            self._emit(Event(host=self._host, data=usage, **ev_scope))
            key = (scope.sandbox_id if scope else None, usage.ProcessId)
            if not usage.declared and key not in self._flagged:
                self._flagged.add(key)
                where = f"sandbox {scope.sandbox_id}" if scope else "the host"
                decision = PolicyDecision(
                    action="flag",
                    reason=f"GPU compute by pid {usage.ProcessId} in {where}, not in the declared workload",
                    detail={"kind": "undeclared_gpu_compute", "gpu_index": usage.gpu_index},
                )
                self._emit(Event(host=self._host, data=decision, **ev_scope))
        return len(samples)

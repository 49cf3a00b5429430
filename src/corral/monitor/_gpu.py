"""GPU sources: per-process GPU use from NVML, or recorded samples played back through the same interface.

NVML comes from the optional extra ``gpu`` (nvidia-ml-py). Without the module,
driver or a device, ``NvmlSource.open`` returns a source whose ``status`` says
"no GPU: ..." and which yields no samples: that is a state, not an error. A read
that fails once NVML was working raises ``GpuSourceError``: the collector treats
that as the monitor breaking (fail closed for granted sandboxes). ``ReplaySource``
plays back recorded samples (JSON), failures included.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from corral.errors import CollectorError
from corral.events import GpuUsage
from corral.sandbox import CallScope, GpuIdentity

_NO_INSTANCE = 0xFFFFFFFF  # NVML's "not a MIG instance"
_CMDLINE_MAX = 4096
_DRIVER_MARKS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg")  # the driver's own files


class GpuSourceError(CollectorError):
    """The GPU source stopped answering (NVML failed, the GPU fell off the bus)."""


@dataclass(frozen=True)
class GpuSample:
    gpu_index: int
    pid: int
    used_memory_bytes: int | None
    sm_util_pct: float | None
    cgroup: str | None = None  # the process's v2 cgroup path ("0::" line of /proc/<pid>/cgroup)
    gi: int | None = None  # MIG GPU instance and compute instance, when NVML names them
    ci: int | None = None
    image: str | None = None  # /proc/<pid>/exe, as the process's own mount namespace names it
    cmdline: str | None = None


class GpuSource(Protocol):
    status: str  # "ok", or "no GPU: <why>"

    def read(self) -> list[GpuSample]: ...


class NvmlSource:
    """Live NVML readings; degrade to "no GPU" when NVML or a device is absent."""

    def __init__(self, nvml: Any, status: str) -> None:
        self._nvml = nvml
        self.status = status
        self._last_ts: dict[int, int] = {}  # per device: the newest utilisation sample already read

    @classmethod
    def open(cls) -> NvmlSource:
        # NVML works only where the driver is: on a node without it, importing and initialising
        # NVML costs about 25 ms of every process for a certain "no GPU". WSL2 has /dev/dxg alone.
        if not any(os.path.exists(p) for p in _DRIVER_MARKS):
            return cls(None, f"no GPU: no NVIDIA driver on this node (none of {', '.join(_DRIVER_MARKS)})")
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
        try:
            return self._read(nv)
        except nv.NVMLError as exc:
            raise GpuSourceError(f"NVML failed: {exc}") from exc

    def _utilisation(self, nv: Any, i: int, h: Any) -> dict[int, float] | None:
        """Mean SM utilisation per pid since the previous read; None where the device cannot say (MIG)."""
        since = self._last_ts.get(i, 0)
        try:
            samples = nv.nvmlDeviceGetProcessUtilization(h, since)
        except nv.NVMLError as exc:
            # pynvml raises SUCCESS or NOT_FOUND when there is no sample: no process ran a kernel
            if getattr(exc, "value", None) in (nv.NVML_SUCCESS, nv.NVML_ERROR_NOT_FOUND):
                return {}
            return None
        per_pid: dict[int, list[float]] = {}
        for u in samples:
            ts = int(u.timeStamp)
            if ts > since:
                per_pid.setdefault(int(u.pid), []).append(float(u.smUtil))
                self._last_ts[i] = max(self._last_ts.get(i, 0), ts)
        return {pid: sum(v) / len(v) for pid, v in per_pid.items()}

    def _read(self, nv: Any) -> list[GpuSample]:
        out: list[GpuSample] = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            util = self._utilisation(nv, i, h)
            for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                mem = p.usedGpuMemory if isinstance(p.usedGpuMemory, int) else None
                pid = int(p.pid)
                gi = getattr(p, "gpuInstanceId", _NO_INSTANCE)
                ci = getattr(p, "computeInstanceId", _NO_INSTANCE)
                out.append(
                    GpuSample(
                        i,
                        pid,
                        mem,
                        None if util is None else util.get(pid, 0.0),  # no sample: no kernel ran
                        _cgroup_of(pid),
                        None if gi in (None, _NO_INSTANCE) else int(gi),
                        None if ci in (None, _NO_INSTANCE) else int(ci),
                        *_process_of(pid),
                    )
                )
        return out

    def identities(self) -> tuple[GpuIdentity, ...]:
        """Index, PCI bus id, UUID and MIG instances of every GPU, for device discovery."""
        nv = self._nvml
        if nv is None:
            return ()
        out: list[GpuIdentity] = []
        try:
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                bus = nv.nvmlDeviceGetPciInfo(h).busId
                out.append(GpuIdentity(i, _text(bus), _text(nv.nvmlDeviceGetUUID(h)), _migs(nv, h)))
        except nv.NVMLError as exc:
            raise GpuSourceError(f"NVML failed listing GPUs: {exc}") from exc
        return tuple(out)


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _migs(nv: Any, h: Any) -> tuple[tuple[int, int, str, int | None], ...]:
    try:
        current, _pending = nv.nvmlDeviceGetMigMode(h)
    except nv.NVMLError:
        return ()  # a GPU without MIG
    if current != 1:
        return ()
    out: list[tuple[int, int, str, int | None]] = []
    for j in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):
        try:
            m = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
        except nv.NVMLError:
            continue  # an empty slot
        mem = nv.nvmlDeviceGetMemoryInfo(m).total
        gi, ci = nv.nvmlDeviceGetGpuInstanceId(m), nv.nvmlDeviceGetComputeInstanceId(m)
        out.append((int(gi), int(ci), _text(nv.nvmlDeviceGetUUID(m)), int(mem)))
    return tuple(out)


class ReplaySource:
    """Recorded NVML samples: a JSON list of rounds, each a list of sample objects, or
    ``{"error": "..."}`` for a read that failed (the GPU fell off the bus, NVML died)."""

    def __init__(self, rounds: Iterable[list[GpuSample] | str], status: str = "ok") -> None:
        self._rounds = list(rounds)
        self.status = status

    @classmethod
    def load(cls, path: str | Path) -> ReplaySource:
        data = json.loads(Path(path).read_text())
        rounds: list[list[GpuSample] | str] = []
        for r in data["rounds"]:
            rounds.append(str(r["error"]) if isinstance(r, dict) else [GpuSample(**s) for s in r])
        return cls(rounds, data.get("status", "ok"))

    def read(self) -> list[GpuSample]:
        if not self._rounds:
            return []
        r = self._rounds.pop(0)
        if isinstance(r, str):
            raise GpuSourceError(r)
        return r


def _cgroup_of(pid: int) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        return None
    return None


def _process_of(pid: int) -> tuple[str | None, str | None]:
    try:
        image: str | None = str(Path(f"/proc/{pid}/exe").readlink())
    except OSError:
        image = None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()[:_CMDLINE_MAX]
        cmd: str | None = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace") or None
    except OSError:
        cmd = None
    return image, cmd


def call_of(cgroup: str | None, calls: Mapping[str, CallScope]) -> CallScope | None:
    """The call whose unified cgroup ("/corral/sb/call") holds a process's cgroup, if any."""
    path = cgroup
    while path:  # the process's cgroup, then each parent: one lookup per level, not per live call
        scope = calls.get(path)
        if scope is not None:
            return scope
        path = path.rpartition("/")[0]
    return None


def classify(
    samples: Iterable[GpuSample], declared_pids: set[int], calls: Mapping[str, CallScope]
) -> list[tuple[CallScope | None, GpuUsage]]:
    """Each sample as GpuUsage, with the call whose cgroup (v2 path) holds the process, if any.

    ``calls`` maps a unified cgroup path relative to the v2 root ("/corral/sb/call") to its scope.
    A process in a sandbox is never part of the declared workload, whatever its pid (a GPU grant
    is checked by the collector, which knows the sandbox's grant).
    """
    out: list[tuple[CallScope | None, GpuUsage]] = []
    for s in samples:
        scope = call_of(s.cgroup, calls)
        usage = GpuUsage(
            gpu_index=s.gpu_index,
            ProcessId=s.pid,
            used_memory_bytes=s.used_memory_bytes,
            sm_util_pct=s.sm_util_pct,
            declared=scope is None and s.pid in declared_pids,
            Image=s.image,
            CommandLine=s.cmdline,
            gpu_instance_id=s.gi,
            compute_instance_id=s.ci,
        )
        out.append((scope, usage))
    return out

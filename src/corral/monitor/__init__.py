"""Collectors that turn kernel, cgroup and NVML signals into events tied to tool calls.

Each collector is a ``CallObserver`` (``corral.sandbox._scope``): the sandbox
tells it when a call's cgroup exists and when the call's processes are dead,
and it emits ``Event``s through the ``emit`` callable it was built with
(usually ``EventStore.append``).
"""

from corral.monitor._cgstats import SustainedCpu, Usage, read_usage
from corral.monitor._exec import ExecCollector
from corral.monitor._gpu import GpuSample, GpuSource, GpuSourceError, NvmlSource, ReplaySource, classify
from corral.monitor._gpu_watch import GpuCallSummary, GpuCollector, GpuLimits, MinerCheck
from corral.monitor._resources import ResourceCollector

__all__ = [
    "ExecCollector",
    "GpuCallSummary",
    "GpuCollector",
    "GpuLimits",
    "GpuSample",
    "GpuSource",
    "GpuSourceError",
    "MinerCheck",
    "NvmlSource",
    "ReplaySource",
    "ResourceCollector",
    "SustainedCpu",
    "Usage",
    "classify",
    "read_usage",
]

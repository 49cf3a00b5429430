"""Policy section choosing the collectors that follow each call."""

from __future__ import annotations

from pydantic import Field

from corral.policy._base import Section


class MonitoringSection(Section):
    process_exec: bool = Field(
        default=True,
        description="Record every exec of a call (BPF on exec tracepoints, attributed by cgroup). "
        "If the collector cannot run, calls fail rather than run unobserved.",
    )
    resources: bool = Field(
        default=True, description="Sample CPU, memory and pids of long calls; flag sustained CPU (miners)."
    )
    resource_interval_s: float = Field(default=1.0, gt=0, le=60)
    sustained_cpu_cores: float = Field(default=0.8, gt=0, description="CPU use that counts as sustained.")
    sustained_cpu_window_s: float = Field(default=30.0, gt=0, description="How long before it is flagged.")
    gpu: bool = Field(
        default=True,
        description="Poll NVML for per-process GPU use and flag GPU compute outside the declared "
        "training workload (every process inside a sandbox counts as outside). No-op without a GPU.",
    )
    gpu_interval_s: float = Field(default=2.0, gt=0, le=300)

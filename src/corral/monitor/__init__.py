"""Collectors that turn kernel, cgroup and NVML signals into events tied to tool calls."""

from corral.monitor._exec import ExecCollector

__all__ = ["ExecCollector"]

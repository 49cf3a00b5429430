"""Reading a call's resource use from its cgroup files (v1 controllers or v2), and the miner shape.

``read_usage`` takes the call's ``cgroup_paths`` and knows both layouts: v1
``cpuacct.usage``/``memory.max_usage_in_bytes``/``pids.peak`` and v2
``cpu.stat``/``memory.peak``/``pids.peak``. ``SustainedCpu`` is pure logic: it
sees (time, cumulative CPU seconds) samples and says when a call has used at
least ``min_cores`` for ``window_s`` without a break, the shape of a miner.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from corral.sandbox._cgroups import read_text


@dataclass(frozen=True)
class Usage:
    cpu_time_s: float
    memory_bytes: int
    memory_peak_bytes: int | None
    pids: int
    pids_peak: int | None


def _int(path: str) -> int | None:
    text = read_text(path)
    if text is None:
        return None
    text = text.strip()
    if not text or text == "max":
        return None
    try:
        return int(text.split()[0])
    except ValueError:
        return None


def _kv(path: str, key: str) -> int | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except ValueError:
        return None
    return None


def read_usage(paths: Mapping[str, Path]) -> Usage:
    """Current use of one call; a missing file reads as 0 (v1 and v2 differ in what they offer)."""
    dirs = {k: os.fspath(v) for k, v in paths.items()}
    cpu_ns: int | None = None
    if "cpuacct" in dirs:
        cpu_ns = _int(dirs["cpuacct"] + "/cpuacct.usage")
    if cpu_ns is None:
        for key in ("cpu", "unified"):
            usec = _kv(dirs[key] + "/cpu.stat", "usage_usec") if key in dirs else None
            if usec is not None:
                cpu_ns = usec * 1000
                break
    mem_dir = dirs.get("memory", dirs.get("unified"))
    mem = peak = None
    if mem_dir is not None:
        mem = _int(mem_dir + "/memory.usage_in_bytes")
        if mem is None:
            mem = _int(mem_dir + "/memory.current")
        peak = _int(mem_dir + "/memory.max_usage_in_bytes")
        if peak is None:
            peak = _int(mem_dir + "/memory.peak")
    pid_dir = dirs.get("pids", dirs.get("unified"))
    pids = _int(pid_dir + "/pids.current") if pid_dir else None
    pids_peak = _int(pid_dir + "/pids.peak") if pid_dir else None
    return Usage((cpu_ns or 0) / 1e9, mem or 0, peak, pids or 0, pids_peak)


class SustainedCpu:
    """Flags a call whose CPU use stays at or above ``min_cores`` for ``window_s``."""

    def __init__(self, min_cores: float = 0.8, window_s: float = 30.0) -> None:
        self.min_cores = min_cores
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()
        self._since: float | None = None  # start of the current unbroken busy stretch
        self.flagged = False

    def feed(self, t_s: float, cpu_s: float) -> bool:
        """Add a sample; True exactly once, when the busy stretch first reaches ``window_s``."""
        if self._samples:
            t0, c0 = self._samples[-1]
            rate = (cpu_s - c0) / (t_s - t0) if t_s > t0 else 0.0
            if rate >= self.min_cores:
                if self._since is None:
                    self._since = t0
            else:
                self._since = None
        self._samples.append((t_s, cpu_s))
        if len(self._samples) > 2:
            self._samples.popleft()
        if not self.flagged and self._since is not None and t_s - self._since >= self.window_s:
            self.flagged = True
            return True
        return False

    @property
    def busy_for_s(self) -> float:
        if self._since is None or not self._samples:
            return 0.0
        return self._samples[-1][0] - self._since

"""NVML's answers replayed at the level of pynvml's calls, for ``NvmlSource`` on machines without a GPU.

A transcript (JSON, see fixtures/nvml_transcript.json) holds, per device and per read of the source,
what ``nvmlDeviceGetProcessUtilization`` and ``nvmlDeviceGetComputeRunningProcesses`` return (or the
NVML error code they raise), and the identity calls' answers. This replays recorded data through
the same calls ``NvmlSource`` makes; it does not model the driver.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class TranscriptNvml:
    NVMLError = NVMLError
    NVML_SUCCESS = 0
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_NOT_FOUND = 6
    NVML_ERROR_GPU_IS_LOST = 15

    def __init__(self, path: Path, *, lost_after: int | None = None) -> None:
        self._devices: list[dict[str, Any]] = json.loads(path.read_text())["devices"]
        self._lost_after = lost_after  # reads that succeed before the GPU falls off the bus
        self.reads = -1  # advanced by each nvmlDeviceGetCount (the first call of a read)

    def nvmlDeviceGetCount(self) -> int:
        self.reads += 1
        if self._lost_after is not None and self.reads >= self._lost_after:
            raise NVMLError(self.NVML_ERROR_GPU_IS_LOST)
        return len(self._devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        return self._devices[i]

    def _answer(self, h: dict[str, Any], key: str) -> Any:
        got = h[key][self.reads]
        if isinstance(got, dict):
            raise NVMLError(got["error"])
        return got

    def nvmlDeviceGetProcessUtilization(self, h: dict[str, Any], since: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(**u) for u in self._answer(h, "utilization")]

    def nvmlDeviceGetComputeRunningProcesses(self, h: dict[str, Any]) -> list[SimpleNamespace]:
        return [SimpleNamespace(**p) for p in self._answer(h, "processes")]

    def nvmlDeviceGetPciInfo(self, h: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(busId=h["bus_id"].encode())

    def nvmlDeviceGetUUID(self, h: dict[str, Any]) -> str:
        return str(h["uuid"])

    def nvmlDeviceGetMigMode(self, h: dict[str, Any]) -> list[int]:
        if "mig_mode" not in h:
            raise NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return list(h["mig_mode"])

    def nvmlDeviceGetMaxMigDeviceCount(self, h: dict[str, Any]) -> int:
        return int(h.get("max_mig", 0))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: dict[str, Any], j: int) -> dict[str, Any]:
        for m in h.get("migs", []):
            if m["slot"] == j:
                return dict(m)
        raise NVMLError(self.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetMemoryInfo(self, m: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(total=m["memory_total"])

    def nvmlDeviceGetGpuInstanceId(self, m: dict[str, Any]) -> int:
        return int(m["gi"])

    def nvmlDeviceGetComputeInstanceId(self, m: dict[str, Any]) -> int:
        return int(m["ci"])

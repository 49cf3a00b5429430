"""Policy section for GPUs: which devices a sandbox may use, and how much of them.

A device is named the way NVIDIA's own tools name it: an index (PCI bus order, as
``nvidia-smi`` shows it), a GPU UUID (``GPU-...``), a MIG instance UUID (``MIG-...``) or
the legacy MIG form ``MIG-GPU-<uuid>/<gi>/<ci>``. Wildcards and ``all`` are refused: a
grant is always a list of named devices.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from corral.policy._base import Section

_UUID = r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
GPU_UUID = re.compile(rf"GPU-{_UUID}")
MIG_UUID = re.compile(rf"MIG-{_UUID}")
MIG_LEGACY = re.compile(rf"MIG-(GPU-{_UUID})/(\d+)/(\d+)")
_MAX_INDEX = 1023


def _device_id(v: object) -> int | str:
    if isinstance(v, bool):
        raise ValueError("a GPU is named by an index, a GPU-/MIG- UUID or MIG-GPU-<uuid>/<gi>/<ci>")
    if isinstance(v, int):
        if not 0 <= v <= _MAX_INDEX:
            raise ValueError(f"GPU index {v} is out of range (0..{_MAX_INDEX})")
        return v
    if not isinstance(v, str):
        raise ValueError(f"a GPU id must be an integer or a string, got {type(v).__name__}")
    s = v.strip()
    if s.isdigit():
        return _device_id(int(s))
    if s.lower() in ("all", "*", "any") or any(c in s for c in "*?[]"):
        raise ValueError(f"{v!r}: name each GPU the sandbox may use; 'all' and wildcards are refused")
    if GPU_UUID.fullmatch(s) or MIG_UUID.fullmatch(s) or MIG_LEGACY.fullmatch(s):
        return s
    raise ValueError(
        f"{v!r} is not a GPU id: use an index (0), a GPU UUID (GPU-xxxxxxxx-...), a MIG UUID "
        "(MIG-xxxxxxxx-...) or MIG-GPU-<uuid>/<gi>/<ci>"
    )


GpuId = Annotated[int | str, BeforeValidator(_device_id)]


class GpuSection(Section):
    """GPUs a sandbox may use. Secure default: none, and no NVIDIA device node in any sandbox."""

    devices: tuple[GpuId, ...] = Field(
        default=(),
        description="GPUs sandboxes of this policy may use: indices, GPU UUIDs, MIG UUIDs or "
        "MIG-GPU-<uuid>/<gi>/<ci>. Each sandbox gets `max_per_sandbox` of them (the least used first); "
        "only their device nodes are bound. Empty: no GPU at all.",
    )
    max_per_sandbox: int = Field(
        default=1, ge=1, le=64, description="How many of `devices` one sandbox gets."
    )
    compute_budget_s: float | None = Field(
        default=None,
        gt=0,
        description="GPU time one call may use (seconds of full SM utilisation, summed over its processes "
        "and devices, as NVML reports it); a call over it is stopped (stop_reason gpu_budget) and alerted. "
        "Null: no per-call budget.",
    )
    episode_compute_budget_s: float | None = Field(
        default=None,
        gt=0,
        description="GPU time all calls of one sandbox may use together, processes left running included "
        "(episode mode). Null: no episode budget.",
    )
    memory_max_bytes: int | None = Field(
        default=None,
        ge=1 << 20,
        description="GPU memory one call may hold (summed over its processes). Watched through NVML and the "
        "call stopped (stop_reason gpu_memory) when over; a MIG instance's own memory size is a hard limit "
        "the hardware enforces. Null: not limited beyond the device.",
    )
    on_monitor_failure: Literal["stop", "warn"] = Field(
        default="stop",
        description="When NVML is missing or fails while a GPU is granted: `stop` refuses and stops calls "
        "of granted sandboxes (stop_reason gpu_monitor_failure); `warn` lets them run unwatched and says so.",
    )
    driver_libraries: Literal["host", "image"] = Field(
        default="host",
        description="Where a sandbox with an image finds the driver's user-space libraries: `host` binds "
        "the host's (read-only, in /usr/local/nvidia/lib64, which LD_LIBRARY_PATH names), `image` uses the "
        "image's own (they must match the host's kernel driver). Without an image the host's are visible "
        "under the read-only system directories.",
    )

    @field_validator("devices", mode="before")
    @classmethod
    def _a_list(cls, v: object) -> object:
        if isinstance(v, str | int) and not isinstance(v, bool):
            raise ValueError(f"a list of GPU ids, e.g. [0] or [GPU-...], not {v!r} (there is no 'all')")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> GpuSection:
        seen: set[int | str] = set()
        for d in self.devices:
            key = d.lower() if isinstance(d, str) else d
            if key in seen:
                raise ValueError(f"devices: {d!r} is listed twice")
            seen.add(key)
        if self.devices and self.max_per_sandbox > len(self.devices):
            raise ValueError(
                f"max_per_sandbox is {self.max_per_sandbox} but devices lists only {len(self.devices)}"
            )
        return self

    @property
    def granted(self) -> bool:
        return bool(self.devices)

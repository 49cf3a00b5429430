"""Sandbox core: per-episode confinement of tool calls (namespaces, cgroups, seccomp, workspace)."""

from corral.sandbox._callio import RawOutcome
from corral.sandbox._coalesce import Coalescer
from corral.sandbox._command import CallOutcome, new_id, normalize_command
from corral.sandbox._files import FileSession
from corral.sandbox._gpu import (
    DriverFile,
    GpuAllocator,
    GpuDevice,
    GpuGrant,
    GpuIdentity,
    GpuInventory,
    GrantedGpu,
    MigInstance,
    discover_gpus,
    grant_gpus,
)
from corral.sandbox._jail import Jail
from corral.sandbox._launcher import per_netns, thread_netns
from corral.sandbox._offloop import off_loop
from corral.sandbox._pace import pace
from corral.sandbox._plan import INSIDE_UID, INSIDE_USER, ImageView
from corral.sandbox._preflight import preflight
from corral.sandbox._result import STOP_REASONS, StopReason, ToolResult
from corral.sandbox._scope import CallObserver, CallScope, NetworkAttachment
from corral.sandbox._seccomp import DENIED_SYSCALLS
from corral.sandbox._state import DEFAULT_STATE_ROOT, reap_stale

__all__ = [
    "DEFAULT_STATE_ROOT",
    "DENIED_SYSCALLS",
    "INSIDE_UID",
    "INSIDE_USER",
    "STOP_REASONS",
    "CallObserver",
    "CallOutcome",
    "CallScope",
    "Coalescer",
    "DriverFile",
    "FileSession",
    "GpuAllocator",
    "GpuDevice",
    "GpuGrant",
    "GpuIdentity",
    "GpuInventory",
    "GrantedGpu",
    "ImageView",
    "Jail",
    "MigInstance",
    "NetworkAttachment",
    "RawOutcome",
    "StopReason",
    "ToolResult",
    "discover_gpus",
    "grant_gpus",
    "new_id",
    "normalize_command",
    "off_loop",
    "pace",
    "per_netns",
    "preflight",
    "reap_stale",
    "thread_netns",
]

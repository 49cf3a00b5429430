"""The harness: the public sandboxes that compose confinement, egress, monitoring and detection."""

from corral.harness._async_sandbox import AsyncSandbox
from corral.harness._backends import (
    BUILTIN_BACKENDS,
    ENTRY_POINT_GROUP,
    BackendFactory,
    BackendRegistry,
    BackendSpec,
    backend,
)
from corral.harness._conformance import CheckResult, arun_conformance, run_conformance
from corral.harness._conformance_checks import CHECKS, Check, CheckEnv, ConformanceFailure
from corral.harness._harness import DEFAULT_STORE, EventSink, Harness
from corral.harness._host import node_address
from corral.harness._interface import (
    AsyncSandboxLike,
    Command,
    FileEntry,
    OutputChunk,
    SandboxLike,
    StreamItem,
)
from corral.harness._portal import Portal, portal
from corral.harness._sync_sandbox import Sandbox, SyncSandbox

__all__ = [
    "BUILTIN_BACKENDS",
    "CHECKS",
    "DEFAULT_STORE",
    "ENTRY_POINT_GROUP",
    "AsyncSandbox",
    "AsyncSandboxLike",
    "BackendFactory",
    "BackendRegistry",
    "BackendSpec",
    "Check",
    "CheckEnv",
    "CheckResult",
    "Command",
    "ConformanceFailure",
    "EventSink",
    "FileEntry",
    "Harness",
    "OutputChunk",
    "Portal",
    "Sandbox",
    "SandboxLike",
    "StreamItem",
    "SyncSandbox",
    "arun_conformance",
    "backend",
    "node_address",
    "portal",
    "run_conformance",
]

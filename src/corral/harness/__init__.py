"""The harness: the public sandboxes that compose confinement, egress, monitoring and detection."""

from corral.harness._async_sandbox import AsyncSandbox
from corral.harness._conformance import CHECKS, Check, CheckResult, run_conformance
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
    "CHECKS",
    "DEFAULT_STORE",
    "AsyncSandbox",
    "AsyncSandboxLike",
    "Check",
    "CheckResult",
    "Command",
    "EventSink",
    "FileEntry",
    "Harness",
    "OutputChunk",
    "Portal",
    "Sandbox",
    "SandboxLike",
    "StreamItem",
    "SyncSandbox",
    "node_address",
    "portal",
    "run_conformance",
]

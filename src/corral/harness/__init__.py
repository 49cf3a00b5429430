"""The harness: the public Sandbox that composes confinement, egress, monitoring and detection."""

from corral.harness._conformance import CHECKS, Check, CheckResult, SandboxLike, run_conformance
from corral.harness._harness import EventSink, Harness
from corral.harness._host import node_address
from corral.harness._sandbox import Sandbox

__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "EventSink",
    "Harness",
    "Sandbox",
    "SandboxLike",
    "node_address",
    "run_conformance",
]

"""The harness: the public Sandbox that composes confinement, egress, monitoring and detection."""

from corral.harness._host import node_address
from corral.harness._sandbox import EventSink, Sandbox

__all__ = ["EventSink", "Sandbox", "node_address"]

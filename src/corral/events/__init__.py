"""Events and trace context: the typed records every layer below the sandbox exchanges."""

from corral.events._model import (
    EVENT_TYPES,
    Alert,
    Decision,
    DnsQuery,
    Event,
    FileDenied,
    GpuUsage,
    Health,
    Level,
    NetworkConnection,
    Payload,
    PolicyDecision,
    ProcessExit,
    ProcessStart,
    ResourceSample,
    ToolCall,
    now_ns,
)
from corral.events._trace import TraceContext, TraceRecord

__all__ = [
    "EVENT_TYPES",
    "Alert",
    "Decision",
    "DnsQuery",
    "Event",
    "FileDenied",
    "GpuUsage",
    "Health",
    "Level",
    "NetworkConnection",
    "Payload",
    "PolicyDecision",
    "ProcessExit",
    "ProcessStart",
    "ResourceSample",
    "ToolCall",
    "TraceContext",
    "TraceRecord",
    "now_ns",
]

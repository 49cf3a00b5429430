"""Events and trace context: the typed records every layer below the sandbox exchanges."""

from corral.events._export import EXPORT_FORMATS, export_events, write_jsonl, write_ocsf, write_parquet
from corral.events._model import (
    EVENT_TYPES,
    OUTPUT_CAP_BYTES,
    Alert,
    Decision,
    DnsQuery,
    Event,
    FileDenied,
    FileTransfer,
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
    cap_output,
    now_ns,
)
from corral.events._ocsf import to_ocsf
from corral.events._otel import export_spans, otel_available
from corral.events._reader import StoreReader
from corral.events._store import EventStore, StoreStats, default_store_path
from corral.events._timefmt import parse_time_ns, rfc3339_ns
from corral.events._trace import TraceContext, TraceRecord
from corral.events._tracewriter import trace_lines, trace_record, trace_records, write_trace_jsonl

__all__ = [
    "EVENT_TYPES",
    "EXPORT_FORMATS",
    "OUTPUT_CAP_BYTES",
    "Alert",
    "Decision",
    "DnsQuery",
    "Event",
    "EventStore",
    "FileDenied",
    "FileTransfer",
    "GpuUsage",
    "Health",
    "Level",
    "NetworkConnection",
    "Payload",
    "PolicyDecision",
    "ProcessExit",
    "ProcessStart",
    "ResourceSample",
    "StoreReader",
    "StoreStats",
    "ToolCall",
    "TraceContext",
    "TraceRecord",
    "cap_output",
    "default_store_path",
    "export_events",
    "export_spans",
    "now_ns",
    "otel_available",
    "parse_time_ns",
    "rfc3339_ns",
    "to_ocsf",
    "trace_lines",
    "trace_record",
    "trace_records",
    "write_jsonl",
    "write_ocsf",
    "write_parquet",
    "write_trace_jsonl",
]

"""Correlate infrastructure logs with RL traces: which episode and tool call caused each record.

Log readers (one module per format) resolve through an explicit registry and
detect their format from content; trace readers turn Corral's store, generic
trace files, ROLL dumps and OTLP spans into ``TraceRecord``; ``correlate``
attributes records (strongest evidence first) and groups incidents; ``Watcher``
does the same live, following logs and traces as they grow, and feeds the
responder.
"""

from corral.correlate import (  # noqa: F401  (each module registers its reader)
    _alibaba,
    _aws,
    _azure,
    _conntrack,
    _falco,
    _gcp,
    _generic,
    _hubble,
    _netfilter,
    _suricata,
    _zeek,
)
from corral.correlate._attribute import METHODS
from corral.correlate._correlate import CorrelationResult, correlate, correlate_tables
from corral.correlate._incidents import is_violation
from corral.correlate._record import RECORD_SCHEMA, LogRecord, Malformed, ReadStats
from corral.correlate._registry import (
    JsonLineReader,
    LineReader,
    LogReader,
    detect_format,
    iter_log,
    log_formats,
    make_reader,
    read_logs,
    register,
)
from corral.correlate._result import (
    Attribution,
    CallOut,
    CorralAlertOut,
    CorrelationReport,
    Destination,
    EpisodeOut,
    FileStatsOut,
    Incident,
    LogRecordOut,
    ReportSummary,
)
from corral.correlate._tracefiles import DEFAULT_OTEL_MAPPING, CallInfo
from corral.correlate._traces import EgressRecord, StoreAlert, TraceSet, load_traces
from corral.correlate._watch import Watcher, WatchItem, WatchStats

__all__ = [
    "DEFAULT_OTEL_MAPPING",
    "METHODS",
    "RECORD_SCHEMA",
    "Attribution",
    "CallInfo",
    "CallOut",
    "CorralAlertOut",
    "CorrelationReport",
    "CorrelationResult",
    "Destination",
    "EgressRecord",
    "EpisodeOut",
    "FileStatsOut",
    "Incident",
    "JsonLineReader",
    "LineReader",
    "LogReader",
    "LogRecord",
    "LogRecordOut",
    "Malformed",
    "ReadStats",
    "ReportSummary",
    "StoreAlert",
    "TraceSet",
    "WatchItem",
    "WatchStats",
    "Watcher",
    "correlate",
    "correlate_tables",
    "detect_format",
    "is_violation",
    "iter_log",
    "load_traces",
    "log_formats",
    "make_reader",
    "read_logs",
    "register",
]

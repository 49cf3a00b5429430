"""The public surface of ``corral.correlate`` and ``corral.report`` is pinned."""

from __future__ import annotations

import corral.correlate
import corral.report


def test_correlate_public_names() -> None:
    assert sorted(corral.correlate.__all__) == sorted(
        [
            "DEFAULT_OTEL_MAPPING", "METHODS", "RECORD_SCHEMA", "Attribution", "CorralAlertOut",
            "CorrelationReport",
            "CorrelationResult", "Destination", "EgressRecord", "FileStatsOut", "Incident", "JsonLineReader",
            "LineReader", "LogReader", "LogRecord", "LogRecordOut", "Malformed", "ReadStats", "StoreAlert",
            "TraceSet", "correlate", "correlate_tables", "detect_format", "is_violation", "iter_log",
            "load_traces",
            "log_formats", "make_reader", "read_logs", "register",
        ]
    )  # fmt: skip
    for name in corral.correlate.__all__:
        assert getattr(corral.correlate, name) is not None


def test_report_public_names() -> None:
    assert sorted(corral.report.__all__) == sorted(
        [
            "LEVEL_COLORS", "Cell", "Point", "Redactor", "badge", "bars_svg", "cards", "code", "details",
            "esc",
            "fmt_time", "page", "print_correlation_summary", "redact_report", "redactor_for",
            "render_correlation_html", "scatter_svg", "section", "stix_bundle", "table", "write_stix",
        ]
    )  # fmt: skip
    for name in corral.report.__all__:
        assert getattr(corral.report, name) is not None

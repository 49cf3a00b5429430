"""Reports people can read: self-contained HTML, terminal summaries, and sharing exports.

``corral.report._html`` is a small toolkit (``page``, ``table``, ``Cell``,
``cards``, ``details``, ``section``, ``scatter_svg``, ``bars_svg``, ``badge``,
``code``, ``esc``, ``fmt_time``) that other reports (red-team scorecard, demo)
build on; it is re-exported here. The correlation reports need pyarrow and duckdb (the
correlate extra; stix2 for STIX) and load on first use, so that the toolkit does not.
"""

import importlib
from typing import TYPE_CHECKING, Any

from corral.report._html import (
    LEVEL_COLORS,
    Cell,
    Point,
    badge,
    bars_svg,
    cards,
    code,
    details,
    esc,
    fmt_time,
    page,
    scatter_svg,
    section,
    table,
)

if TYPE_CHECKING:
    from corral.report._correlation_html import render_correlation_html
    from corral.report._incident_html import endpoint
    from corral.report._redact import Redactor, redact_report, redactor_for
    from corral.report._stix import stix_bundle, write_stix
    from corral.report._story_html import IncidentStory, StoryEvent, story_section, swimlanes_svg
    from corral.report._terminal import print_correlation_summary

_LAZY = {
    "render_correlation_html": "corral.report._correlation_html",
    "endpoint": "corral.report._incident_html",
    "Redactor": "corral.report._redact",
    "redact_report": "corral.report._redact",
    "redactor_for": "corral.report._redact",
    "stix_bundle": "corral.report._stix",
    "write_stix": "corral.report._stix",
    "IncidentStory": "corral.report._story_html",
    "StoryEvent": "corral.report._story_html",
    "story_section": "corral.report._story_html",
    "swimlanes_svg": "corral.report._story_html",
    "print_correlation_summary": "corral.report._terminal",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral.report' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "LEVEL_COLORS",
    "Cell",
    "IncidentStory",
    "Point",
    "Redactor",
    "StoryEvent",
    "badge",
    "bars_svg",
    "cards",
    "code",
    "details",
    "endpoint",
    "esc",
    "fmt_time",
    "page",
    "print_correlation_summary",
    "redact_report",
    "redactor_for",
    "render_correlation_html",
    "scatter_svg",
    "section",
    "stix_bundle",
    "story_section",
    "swimlanes_svg",
    "table",
    "write_stix",
]

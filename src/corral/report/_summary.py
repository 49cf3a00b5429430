"""The counts every view of a correlation shows, and where its calls came from, said once.

The terminal summary and the HTML cards both print ``summary_items``, so their
numbers cannot disagree; the agent's tool calls and the environment's trusted
runs (a grader) are counted apart.
"""

from __future__ import annotations

from corral.correlate import CorrelationReport, ReportSummary, is_violation


def summary_of(report: CorrelationReport) -> ReportSummary:
    """The report's summary (computed for reports saved before it had one)."""
    if report.summary is not None:
        return report.summary
    trusted = sum(1 for c in report.calls.values() if c.trusted)
    return ReportSummary(
        records=report.records,
        attributed=report.attributed,
        ambiguous=sum(1 for a in report.attributions if a.candidate_count > 1),
        unattributed=len(report.unattributed),
        violations=sum(1 for a in report.attributions if is_violation(a)),
        malformed_lines=sum(s.malformed for s in [*report.logs, *report.traces]),
        ignored_lines=sum(s.ignored for s in report.logs),
        agent_calls=report.tool_calls - trusted,
        trusted_calls=trusted,
        calls_blocked=sum(1 for c in report.calls.values() if c.blocked),
        incidents=len(report.incidents),
        incidents_ambiguous=sum(1 for i in report.incidents if i.ambiguous),
        call_sources=[],
    )


def summary_items(report: CorrelationReport) -> list[tuple[str, object]]:
    """(label, value) for every headline count, in display order."""
    s = summary_of(report)
    return [
        ("incidents", s.incidents),
        ("of which ambiguous", s.incidents_ambiguous),
        ("violations attributed", s.violations),
        ("records read", s.records),
        ("attributed", s.attributed),
        ("ambiguous attributions", s.ambiguous),
        ("unattributed", s.unattributed),
        ("agent tool calls", s.agent_calls),
        ("trusted grader runs", s.trusted_calls),
        ("calls blocked", s.calls_blocked),
        ("malformed lines", s.malformed_lines),
        ("clock skew", f"{report.skew_s:g} s"),
    ]


def sources_note(report: CorrelationReport) -> str:
    """Where the calls came from, and what that means for what the report can show."""
    sources = summary_of(report).call_sources
    parts = []
    if "event store" in sources:
        parts.append(
            "Calls from Corral's event store: whether each was blocked or ran, its captured output and "
            "Corral's own alerts are shown."
        )
    if "trace file" in sources:
        parts.append(
            "Calls from trace files: outcome and output only where the file records them; a trace file "
            "holds no Corral alerts."
        )
    parts.append(
        "Incident severity comes from the infrastructure records alone, so it is the same whichever "
        "source the calls came from; Corral's own alert level is shown beside it."
    )
    return " ".join(parts)

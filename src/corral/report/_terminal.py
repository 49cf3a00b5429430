"""The correlation summary for a terminal (rich)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from corral.correlate import CorrelationReport
from corral.report._html import fmt_time
from corral.report._incident_html import endpoint
from corral.report._summary import sources_note, summary_items

_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan"}


def print_correlation_summary(
    report: CorrelationReport, console: Console | None = None, *, max_rows: int = 20
) -> None:
    """Counts (the HTML report's, the same numbers), incidents (most severe first), methods and bad lines."""
    con = console or Console()
    methods = Counter(a.method for a in report.attributions)
    con.print("; ".join(f"{label} [bold]{value}[/]" for label, value in summary_items(report)))
    con.print(f"[dim]{sources_note(report)}[/]")
    if methods:
        con.print("methods: " + ", ".join(f"{m} {n}" for m, n in methods.most_common()))
    t = Table(title=f"Incidents ({len(report.incidents)})", show_lines=False)
    cols = (
        "id",
        "severity",
        "run / episode",
        "first seen",
        "records",
        "calls",
        "destinations",
        "first command",
    )
    for col in (*cols, "Corral alerts"):
        t.add_column(col, overflow="fold")
    for inc in report.incidents[:max_rows]:
        who = (
            f"[yellow]ambiguous ({len(inc.candidate_episodes)})[/]"
            if inc.ambiguous
            else f"{inc.run_id} / {inc.episode_id}"
        )
        dests = ", ".join(endpoint(d.ip, d.port) for d in inc.destinations[:3] if d.ip)
        cmd = escape(inc.first_command) if inc.first_command is not None else "[dim]not certain[/]"
        titles = "; ".join(sorted({a.title for a in inc.alerts})[:3])
        t.add_row(
            inc.id,
            f"[{_STYLE.get(inc.severity, '')}]{inc.severity}[/]",
            who,
            fmt_time(inc.first_time),
            str(inc.record_count),
            f"{inc.calls_blocked} blocked, {inc.calls_ran} ran",
            dests,
            cmd,
            escape(titles),
        )
    if report.incidents:
        con.print(t)
        if len(report.incidents) > max_rows:
            con.print(
                f"[dim]... {len(report.incidents) - max_rows} more incidents in the JSON/HTML report[/]"
            )
    else:
        con.print("[green]No incidents.[/]")
    for s in [*report.logs, *report.traces]:
        if s.malformed:
            first = s.samples[0] if s.samples else None
            where = f" (first: line {first.line}: {first.reason})" if first else ""
            con.print(f"[yellow]{escape(s.file)}[/]: {s.malformed} malformed lines skipped{escape(where)}")

"""The correlation summary for a terminal (rich)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from corral.correlate import CorrelationReport
from corral.report._correlation_html import endpoint
from corral.report._html import fmt_time

_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan"}


def print_correlation_summary(
    report: CorrelationReport, console: Console | None = None, *, max_rows: int = 20
) -> None:
    """Counts, incidents (most severe first), attribution methods and files with malformed lines."""
    con = console or Console()
    methods = Counter(a.method for a in report.attributions)
    ambiguous = sum(1 for a in report.attributions if a.candidate_count > 1)
    con.print(
        f"[bold]{report.records}[/] log records, [bold]{report.attributed}[/] attributed "
        f"([yellow]{ambiguous}[/] ambiguous), [bold]{len(report.unattributed)}[/] unattributed, "
        f"[bold]{report.tool_calls}[/] tool calls, clock skew {report.skew_s:g} s"
    )
    if methods:
        con.print("methods: " + ", ".join(f"{m} {n}" for m, n in methods.most_common()))
    t = Table(title=f"Incidents ({len(report.incidents)})", show_lines=False)
    for col in ("id", "severity", "run / episode", "first seen", "records", "destinations", "first command"):
        t.add_column(col, overflow="fold")
    for inc in report.incidents[:max_rows]:
        who = (
            f"[yellow]ambiguous ({len(inc.candidate_episodes)})[/]"
            if inc.ambiguous
            else f"{inc.run_id} / {inc.episode_id}"
        )
        dests = ", ".join(endpoint(d.ip, d.port) for d in inc.destinations[:3] if d.ip)
        cmd = inc.first_command if inc.first_command is not None else "[dim]not certain[/]"
        t.add_row(
            inc.id,
            f"[{_STYLE.get(inc.severity, '')}]{inc.severity}[/]",
            who,
            fmt_time(inc.first_time),
            str(inc.record_count),
            dests,
            cmd,
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
            con.print(f"[yellow]{s.file}[/]: {s.malformed} malformed lines skipped{where}")

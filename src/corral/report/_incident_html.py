"""The drill-down of a correlation report: each incident, and each guilty episode's calls in order.

An incident says which calls were blocked and which ran, shows their captured
output and Corral's alerts by title, and links to its episode; the episode
section lists all of the episode's calls in order with their alerts and
attributed violations, the environment's trusted runs (a grader) apart.
"""

from __future__ import annotations

from collections import Counter

from corral.correlate import (
    Attribution,
    CallOut,
    CorralAlertOut,
    CorrelationReport,
    EpisodeOut,
    Incident,
    is_violation,
)
from corral.report._html import Cell, badge, code, details, esc, fmt_time, table

MAX_ROWS = 500
LEVELS = ["informational", "low", "medium", "high", "critical"]


def endpoint(ip: str | None, port: int | None) -> str:
    """``ip:port`` (``[v6]:port``), the address alone, or a dash when the log had none."""
    if not ip:
        return "-"
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def status_cell(c: CallOut) -> Cell:
    """Blocked (before it ran), ran (with its exit code and stop reason), or not recorded by the source."""
    if c.blocked is None:
        return Cell("<span class='muted'>not recorded</span>", 1)
    if c.blocked:
        why = f" ({esc(c.stop_reason)})" if c.stop_reason else ""
        return Cell(f"<span class='warn'><b>blocked</b></span>{why}", 2)
    code_ = "" if c.exit_code is None else f", exit {c.exit_code}"
    stop = f", {esc(c.stop_reason)}" if c.stop_reason else ""
    return Cell(f"ran{code_}{stop}", 0)


def alert_titles(alerts: list[CorralAlertOut]) -> str:
    """Rule titles with their level (the rule id only as a tooltip)."""
    if not alerts:
        return ""
    seen: dict[str, CorralAlertOut] = {}
    for a in alerts:
        seen.setdefault(a.title, a)
    return "<br>".join(
        f'{badge(a.level)} <span title="{esc(a.rule_id)}">{esc(t)}</span>' for t, a in seen.items()
    )


def output_block(c: CallOut) -> str:
    """The call's captured stdout and stderr (capped by the source), collapsed."""
    parts = []
    for name, text in (("stdout", c.stdout), ("stderr", c.stderr)):
        if text:
            parts.append(f"<div class='muted'>{name}</div><pre class='out'>{esc(text)}</pre>")
    if not parts:
        return "<span class='muted'>no output recorded</span>"
    return details("output", "".join(parts))


def calls_table(calls: list[CallOut], violations: Counter[str]) -> str:
    rows = [
        [
            c.turn,
            Cell(esc(fmt_time(c.start)), c.start),
            c.step,
            status_cell(c),
            Cell(code(c.command)),
            Cell(alert_titles(c.alerts)),
            violations.get(c.tool_call_id, 0),
            Cell(output_block(c)),
            Cell(code(c.tool_call_id)),
        ]
        for c in calls
    ]
    return table(
        [
            "turn",
            "start",
            "step",
            "blocked or ran",
            "command",
            "Corral alerts",
            "violations",
            "output",
            "call",
        ],
        rows,
    )


def incident_detail(inc: Incident, report: CorrelationReport, violations: Counter[str]) -> str:
    calls = [report.calls[c] for c in inc.tool_call_ids if c in report.calls]
    first = (
        f"<p>Started by tool call {code(inc.first_tool_call_id)}: {code(inc.first_command)}</p>"
        if inc.first_tool_call_id
        else "<p class='warn'>The evidence does not single out the tool call that started this incident; "
        "candidates are listed below.</p>"
    )
    amb = (
        "<p class='warn'>Ambiguous: the evidence cannot tell these episodes apart: "
        f"{esc(', '.join(inc.candidate_episodes))}</p>"
        if inc.ambiguous
        else ""
    )
    outcome = (
        f"<p>Calls: <b>{inc.calls_blocked}</b> blocked, <b>{inc.calls_ran}</b> ran"
        + (f", {inc.calls_unknown} not recorded by the trace" if inc.calls_unknown else "")
        + (f". Corral's own alerts: {badge(inc.alert_level)}" if inc.alert_level else "")
        + (f". <a href='#{esc(inc.episode_ref)}'>All calls of this episode</a>" if inc.episode_ref else "")
        + ".</p>"
    )
    dest_rows = [
        [d.ip, d.port, d.proto, d.count, ", ".join(d.actions), ", ".join(d.signatures)]
        for d in inc.destinations
    ]
    alert_rows = [
        [
            fmt_time(al.time),
            Cell(badge(al.level)),
            Cell(f'<span title="{esc(al.rule_id)}">{esc(al.title)}</span>'),
            al.tool_call_id,
        ]
        for al in inc.alerts
    ]
    body = (
        amb
        + first
        + outcome
        + "<h3>Tool calls</h3>"
        + calls_table(calls, violations)
        + "<h3>Destinations</h3>"
        + table(["ip", "port", "proto", "records", "actions", "signatures"], dest_rows)
        + (
            ("<h3>Corral alerts</h3>" + table(["time", "level", "rule", "tool call"], alert_rows))
            if alert_rows
            else ""
        )
        + "<h3>Evidence</h3>"
        + evidence_table([report.attributions[i] for i in inc.attribution_indexes[:MAX_ROWS]])
    )
    if inc.shared_attribution_indexes:
        body += (
            "<h3>Records that also fit other episodes' calls</h3><p class='muted'>Shown here because one of "
            "their candidates is this incident's call; not counted in its records.</p>"
            + evidence_table([report.attributions[i] for i in inc.shared_attribution_indexes[:MAX_ROWS]])
        )
    who = "ambiguous episodes" if inc.ambiguous else f"run {inc.run_id}, episode {inc.episode_id}"
    span = f"{fmt_time(inc.first_time)} .. {fmt_time(inc.last_time)}"
    ran = f"{inc.calls_blocked} blocked, {inc.calls_ran} ran"
    summary = f"{esc(inc.id)} {badge(inc.severity)} {esc(who)}: {inc.record_count} records, {ran}, {span}"
    return details(summary, body, anchor=inc.id, open_=len(report.incidents) <= 3)


def evidence_table(atts: list[Attribution]) -> str:
    rows = []
    for a in atts:
        cands = ", ".join(a.candidates[:8]) + (
            f" (+{a.candidate_count - 8})" if a.candidate_count > 8 else ""
        )
        rows.append(
            [
                Cell(code(f"{a.log_file}:{a.log_line}")),
                a.format,
                Cell(esc(fmt_time(a.time)), a.time),
                f"{endpoint(a.src_ip, a.src_port)} -> {endpoint(a.dst_ip, a.dst_port)} {a.proto or ''}",
                a.action,
                a.signature,
                a.method,
                Cell(
                    f"{a.confidence:.2f}"
                    + (" <span class='warn'>ambiguous</span>" if a.candidate_count > 1 else ""),
                    a.confidence,
                ),
                cands,
                a.evidence,
            ]
        )
    return table(
        [
            "log line",
            "format",
            "time",
            "flow",
            "action",
            "signature",
            "method",
            "confidence",
            "candidates",
            "why",
        ],
        rows,
    )


def episode_section(ep: EpisodeOut, report: CorrelationReport, violations: Counter[str]) -> str:
    calls = [report.calls[c] for c in ep.call_ids if c in report.calls]
    trusted = [report.calls[c] for c in ep.trusted_call_ids if c in report.calls]
    links = ", ".join(f'<a href="#{esc(i)}">{esc(i)}</a>' for i in ep.incident_ids)
    blocked = sum(1 for c in calls if c.blocked)
    body = (
        f"<p>Incident {links}. {len(calls)} calls of the agent in order ({blocked} blocked), "
        f"{ep.violations} attributed violations, {ep.alerts} Corral alerts.</p>"
        + calls_table(calls, violations)
    )
    if trusted:
        body += "<h3>Trusted runs (the environment's own, not the agent's calls)</h3>" + calls_table(
            trusted, violations
        )
    summary = f"{esc(ep.id)} run {esc(ep.run_id)}, episode {esc(ep.episode_id)}: {len(calls)} calls"
    return details(summary, body, anchor=ep.id, open_=len(report.episodes) <= 2)


def violations_by_call(report: CorrelationReport) -> Counter[str]:
    return Counter(a.tool_call_id for a in report.attributions if a.tool_call_id and is_violation(a))

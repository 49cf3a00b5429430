"""The correlation report as one self-contained HTML file."""

from __future__ import annotations

from collections import Counter, defaultdict

from corral.correlate import Attribution, CorrelationReport, Incident, is_violation
from corral.events import TraceRecord
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

MAX_ROWS = 500


def endpoint(ip: str | None, port: int | None) -> str:
    """``ip:port`` (``[v6]:port``), the address alone, or a dash when the log had none."""
    if not ip:
        return "-"
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def render_correlation_html(report: CorrelationReport, *, title: str = "Corral correlation report") -> str:
    """Timeline, incidents with drill-down to commands and evidence, destinations, files."""
    violations = [a for a in report.attributions if is_violation(a)]
    malformed = sum(s.malformed for s in report.logs)
    body = [
        cards(
            [
                ("incidents", len(report.incidents)),
                ("violations attributed", len(violations)),
                ("records read", report.records),
                ("attributed", report.attributed),
                ("unattributed", len(report.unattributed)),
                ("tool calls", report.tool_calls),
                ("malformed lines", malformed),
                ("clock skew", f"{report.skew_s:g} s"),
            ]
        ),
        section("Timeline of violations", _timeline(violations, report.calls)),
        section("Runs", _runs(report)),
        section("Incidents", _incidents(report)),
        section("Outside destinations", _destinations(report)),
        section("Log files", _files(report)),
        section("Unattributed records", _unattributed(report)),
    ]
    sub = f"generated {fmt_time(report.generated_at)}; {len(report.logs)} log files, "
    sub += f"{len(report.traces)} trace sources"
    return page(title, "".join(body), subtitle=sub)


def _step_of(a: Attribution, calls: dict[str, TraceRecord]) -> int | None:
    if a.step is not None:
        return a.step
    steps = {calls[c].step for c in a.candidates if c in calls and calls[c].step is not None}
    return min(steps) if len(steps) == 1 else None  # type: ignore[type-var]


def _timeline(violations: list[Attribution], calls: dict[str, TraceRecord]) -> str:
    pts: list[Point] = []
    per_step: Counter[int] = Counter()
    for a in violations:
        step = _step_of(a, calls)
        if step is not None:
            per_step[step] += 1
        if a.time is None or step is None:
            continue
        sev = a.severity or ("high" if a.kind == "alert" else "medium")
        who = a.tool_call_id or f"{a.candidate_count} candidates"
        flow = f"{endpoint(a.src_ip, a.src_port)} -> {endpoint(a.dst_ip, a.dst_port)}"
        label = f"{fmt_time(a.time)} step {step} {flow} {a.action} {a.signature or ''} [{who}]"
        pts.append(
            Point(a.time, float(step), LEVEL_COLORS.get(sev, "#475569"), label, hollow=a.episode_count > 1)
        )
    legend = " ".join(f"{badge(lv)}" for lv in ("critical", "high", "medium", "low"))
    scatter = scatter_svg(
        pts[:5000], x_label="wall time (UTC)", y_label="training step", x_is_time=True, integer_y=True
    )
    bars = bars_svg([(str(s), float(n)) for s, n in sorted(per_step.items())], y_label="violations")
    intro = (
        "<p class='muted'>Each point is one attributed violation; colour is severity; "
        f"a ring is evidence shared by several episodes. {legend}</p>"
    )
    return f"{intro}{scatter}<h3>Violations per training step</h3>{bars}"


def _runs(report: CorrelationReport) -> str:
    """Per run: the episodes the evidence pins incidents on (links to their drill-down)."""
    runs: dict[str, list[Incident]] = defaultdict(list)
    ambiguous = 0
    for inc in report.incidents:
        if inc.ambiguous:
            ambiguous += 1
        else:
            runs[inc.run_id or "(no run id)"].append(inc)
    if not runs and not ambiguous:
        return "<p class='muted'>No run has an incident.</p>"
    levels = ["informational", "low", "medium", "high", "critical"]
    rows = []
    for run, incs in sorted(runs.items()):
        worst = max((i.severity for i in incs), key=levels.index)
        links = ", ".join(f'<a href="#{esc(i.id)}">{esc(i.episode_id)}</a>' for i in incs)
        steps = sorted({s for i in incs for s in i.steps})
        rows.append(
            [
                run,
                Cell(badge(worst), levels.index(worst)),
                len(incs),
                Cell(links),
                ", ".join(map(str, steps[:20])),
                sum(i.record_count for i in incs),
            ]
        )
    note = (
        f"<p class='warn'>{ambiguous} incident(s) could not be tied to one episode: "
        "see the incidents below.</p>"
        if ambiguous
        else ""
    )
    return note + table(
        ["run", "worst severity", "episodes", "episodes (drill-down)", "steps", "records"], rows
    )


def _incidents(report: CorrelationReport) -> str:
    if not report.incidents:
        return (
            "<p class='muted'>No incidents: no denied or alerting record was attributed to a tool call.</p>"
        )
    rows = []
    for inc in report.incidents:
        who = (
            "ambiguous: " + ", ".join(inc.candidate_episodes[:5])
            if inc.ambiguous
            else f"{inc.run_id} / {inc.episode_id}"
        )
        dest = ", ".join(endpoint(d.ip, d.port) for d in inc.destinations[:3] if d.ip)
        rows.append(
            [
                Cell(f'<a href="#{esc(inc.id)}">{esc(inc.id)}</a>', inc.id),
                Cell(
                    badge(inc.severity),
                    ["informational", "low", "medium", "high", "critical"].index(inc.severity),
                ),
                who,
                Cell(esc(fmt_time(inc.first_time)), inc.first_time),
                Cell(esc(fmt_time(inc.last_time)), inc.last_time),
                ", ".join(map(str, inc.steps[:10])),
                inc.record_count,
                dest,
                Cell(
                    code(inc.first_command) if inc.first_command else "<span class='muted'>not certain</span>"
                ),
                f"{inc.min_confidence:.2f}",
            ]
        )
    summary = table(
        [
            "id",
            "severity",
            "run / episode",
            "first seen",
            "last seen",
            "steps",
            "records",
            "destinations",
            "first command",
            "min conf.",
        ],
        rows,
        table_id="incidents",
        filter_box=True,
    )
    blocks = [_incident_detail(inc, report) for inc in report.incidents]
    return summary + "".join(blocks)


def _incident_detail(inc: Incident, report: CorrelationReport) -> str:
    calls = [report.calls[c] for c in inc.tool_call_ids if c in report.calls]
    call_rows = [
        [
            c.tool_call_id,
            c.run_id,
            c.episode_id,
            c.step,
            c.turn,
            Cell(esc(fmt_time(c.start)), c.start),
            Cell(esc(fmt_time(c.end)), c.end),
            c.sandbox_id,
            c.sandbox_ip,
            c.host,
            Cell(code(c.command)),
        ]
        for c in calls
    ]
    dest_rows = [
        [d.ip, d.port, d.proto, d.count, ", ".join(d.actions), ", ".join(d.signatures)]
        for d in inc.destinations
    ]
    ev_rows = []
    for i in inc.attribution_indexes[:MAX_ROWS]:
        a = report.attributions[i]
        cands = ", ".join(a.candidates[:8]) + (
            f" (+{a.candidate_count - 8})" if a.candidate_count > 8 else ""
        )
        ev_rows.append(
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
    alert_rows = [
        [fmt_time(al.time), badge(al.level), al.rule_id, al.title, al.tool_call_id] for al in inc.alerts
    ]
    alert_rows_cells = [[r[0], Cell(str(r[1])), r[2], r[3], r[4]] for r in alert_rows]
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
    body = (
        amb
        + first
        + "<h3>Tool calls</h3>"
        + table(
            [
                "tool call",
                "run",
                "episode",
                "step",
                "turn",
                "start",
                "end",
                "sandbox",
                "sandbox ip",
                "node",
                "command",
            ],
            call_rows,
        )
        + "<h3>Destinations</h3>"
        + table(["ip", "port", "proto", "records", "actions", "signatures"], dest_rows)
        + (
            (
                "<h3>Corral alerts</h3>"
                + table(["time", "level", "rule", "title", "tool call"], alert_rows_cells)
            )
            if alert_rows
            else ""
        )
        + "<h3>Evidence</h3>"
        + table(
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
            ev_rows,
        )
    )
    who = "ambiguous episodes" if inc.ambiguous else f"run {inc.run_id}, episode {inc.episode_id}"
    span = f"{fmt_time(inc.first_time)} .. {fmt_time(inc.last_time)}"
    summary = f"{esc(inc.id)} {badge(inc.severity)} {esc(who)}: {inc.record_count} records, {span}"
    return details(summary, body, anchor=inc.id, open_=len(report.incidents) <= 3)


def _destinations(report: CorrelationReport) -> str:
    agg: dict[tuple[str | None, int | None, str | None], list[str]] = defaultdict(list)
    counts: Counter[tuple[str | None, int | None, str | None]] = Counter()
    for inc in report.incidents:
        for d in inc.destinations:
            key = (d.ip, d.port, d.proto)
            counts[key] += d.count
            agg[key].append(inc.id)
    rows = [
        [ip, port, proto, n, ", ".join(agg[(ip, port, proto)][:10])]
        for (ip, port, proto), n in counts.most_common(MAX_ROWS)
    ]
    return (
        table(["ip", "port", "proto", "records", "incidents"], rows, table_id="dests", filter_box=True)
        if rows
        else "<p class='muted'>None.</p>"
    )


def _files(report: CorrelationReport) -> str:
    rows = []
    for s in [*report.logs, *report.traces]:
        sample = "<br>".join(f"line {m.line}: {esc(m.reason)} {code(m.text[:120])}" for m in s.samples)
        rows.append(
            [
                Cell(code(s.file)),
                s.format,
                s.records,
                Cell(f"<span class='warn'>{s.malformed}</span>" if s.malformed else "0", s.malformed),
                Cell(sample),
            ]
        )
    return table(["file", "format", "records", "malformed", "sample of malformed lines"], rows)


def _unattributed(report: CorrelationReport) -> str:
    n = len(report.unattributed)
    if not n:
        return "<p class='muted'>Every record was attributed.</p>"
    rows = [
        [
            Cell(code(f"{u.log_file}:{u.log_line}")),
            u.format,
            Cell(esc(fmt_time(u.time)), u.time),
            f"{u.src_ip}:{u.src_port}",
            f"{u.dst_ip}:{u.dst_port}",
            u.proto,
            u.action,
            u.signature,
        ]
        for u in report.unattributed[:MAX_ROWS]
    ]
    more = (
        f"<p class='muted'>Showing {MAX_ROWS} of {n}; the JSON export lists all.</p>" if n > MAX_ROWS else ""
    )
    return more + table(
        ["log line", "format", "time", "source", "destination", "proto", "action", "signature"],
        rows,
        table_id="unattr",
        filter_box=True,
    )

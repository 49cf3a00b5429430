"""The correlation report as one self-contained HTML file."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

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
    esc,
    fmt_time,
    page,
    scatter_svg,
    section,
    table,
)
from corral.report._incident_html import (
    MAX_ROWS,
    endpoint,
    episode_section,
    incident_detail,
    violations_by_call,
)
from corral.report._story_html import STORY_CSS, IncidentStory, story_section
from corral.report._summary import sources_note, summary_items

# A link to an incident or episode opens its collapsed block.
_OPEN_ANCHOR = """
function openAnchor(){var id=location.hash.slice(1);var el=id&&document.getElementById(id);
  if(el&&el.tagName==='DETAILS'){el.open=true;el.scrollIntoView();}}
window.addEventListener('hashchange',openAnchor);openAnchor();
"""
_CSS = (
    "pre.out{white-space:pre-wrap;max-height:240px;overflow:auto;background:#f1f5f9;padding:6px;margin:2px 0}"
)


def render_correlation_html(
    report: CorrelationReport,
    *,
    title: str = "Corral correlation report",
    story: IncidentStory | None = None,
) -> str:
    """Timeline, incidents with drill-down to calls, output and evidence, episodes, destinations, files.

    With a ``story`` (told by whoever watched the run live), the page opens with it.
    """
    violations = [a for a in report.attributions if is_violation(a)]
    per_call = violations_by_call(report)
    episodes = "".join(episode_section(ep, report, per_call) for ep in report.episodes) or (
        "<p class='muted'>No episode has a certain incident.</p>"
    )
    body = [
        f"<section id='story'><h2>The incident</h2>{story_section(story, report)}</section>" if story else "",
        cards(summary_items(report)),
        f"<p class='muted' id='sources'>{esc(sources_note(report))}</p>",
        section("Timeline of violations", _timeline(violations, report.calls)),
        section("Runs", _runs(report)),
        section("Incidents", _incidents(report, per_call)),
        section("Episodes", episodes),
        section("Outside destinations", _destinations(report)),
        section("Log files", _files(report)),
        section("Unattributed records", _unattributed(report)),
    ]
    sub = f"generated {fmt_time(report.generated_at)}; {len(report.logs)} log files, "
    sub += f"{len(report.traces)} trace sources"
    return page(title, "".join(body), subtitle=sub, extra_css=_CSS + STORY_CSS, script=_OPEN_ANCHOR)


def _step_of(a: Attribution, calls: Mapping[str, TraceRecord]) -> int | None:
    if a.step is not None:
        return a.step
    steps = {calls[c].step for c in a.candidates if c in calls and calls[c].step is not None}
    return min(steps) if len(steps) == 1 else None  # type: ignore[type-var]


def _timeline(violations: list[Attribution], calls: Mapping[str, TraceRecord]) -> str:
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
        links = ", ".join(f'<a href="#{esc(i.episode_ref or i.id)}">{esc(i.episode_id)}</a>' for i in incs)
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


def _incidents(report: CorrelationReport, per_call: Counter[str]) -> str:
    if not report.incidents:
        return (
            "<p class='muted'>No incidents: no denied or alerting record was attributed to a tool call.</p>"
        )
    levels = ["informational", "low", "medium", "high", "critical"]
    rows = []
    for inc in report.incidents:
        who = (
            "ambiguous: " + ", ".join(inc.candidate_episodes[:5])
            if inc.ambiguous
            else f"{inc.run_id} / {inc.episode_id}"
        )
        dest = ", ".join(endpoint(d.ip, d.port) for d in inc.destinations[:3] if d.ip)
        titles = sorted({a.title for a in inc.alerts})
        ep_link = f'<a href="#{esc(inc.episode_ref)}">episode</a>' if inc.episode_ref else ""
        rows.append(
            [
                Cell(f'<a href="#{esc(inc.id)}">{esc(inc.id)}</a>', inc.id),
                Cell(badge(inc.severity), levels.index(inc.severity)),
                Cell(f"{esc(who)} {ep_link}"),
                Cell(esc(fmt_time(inc.first_time)), inc.first_time),
                ", ".join(map(str, inc.steps[:10])),
                inc.record_count,
                Cell(f"{inc.calls_blocked} blocked, {inc.calls_ran} ran", inc.calls_blocked),
                dest,
                Cell(
                    code(inc.first_command) if inc.first_command else "<span class='muted'>not certain</span>"
                ),
                Cell(esc("; ".join(titles[:3])) if titles else "<span class='muted'>none</span>"),
                f"{inc.min_confidence:.2f}",
            ]
        )
    summary = table(
        [
            "id",
            "severity",
            "run / episode",
            "first seen",
            "steps",
            "records",
            "calls",
            "destinations",
            "first command",
            "Corral alerts",
            "min conf.",
        ],
        rows,
        table_id="incidents",
        filter_box=True,
    )
    blocks = [incident_detail(inc, report, per_call) for inc in report.incidents]
    return summary + "".join(blocks)


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
        why = ", ".join(f"{esc(k)}: {n}" for k, n in sorted(s.reasons.items(), key=lambda kv: -kv[1])[:6])
        rows.append(
            [
                Cell(code(s.file)),
                s.format,
                s.records,
                Cell(f"<span class='warn'>{s.malformed}</span>" if s.malformed else "0", s.malformed),
                Cell(why),
                s.ignored,
                Cell(sample),
            ]
        )
    return table(
        ["file", "format", "records", "malformed", "why", "ignored (no record)", "sample of malformed lines"],
        rows,
    )


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

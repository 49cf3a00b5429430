"""The incident's story at the top of a report: what was tried, what saw it, what was done, when.

An ``IncidentStory`` is told by whoever watched the run live (``corral demo``, a
trainer's own loop): a headline, the key figures, and ``StoryEvent``s in lanes (one
per act, plus the firewall and the response). It is drawn as a swimlane timeline
(one row per lane, a mark per event, the halt as a line) and listed in order, each
event linking to its episode's drill-down in the same report when there is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from corral.correlate import CorrelationReport
from corral.report._html import Cell, cards, code, esc, fmt_time, table

# kind -> (colour, shape) of its mark on the timeline
KINDS: dict[str, tuple[str, str]] = {
    "started": ("#0891b2", "circle"),
    "blocked": ("#dc2626", "square"),
    "alert": ("#ea580c", "circle"),
    "denied": ("#7c3aed", "diamond"),
    "firewall": ("#1d4ed8", "diamond"),
    "attributed": ("#16a34a", "circle"),
    "quarantine": ("#d97706", "square"),
    "closed": ("#475569", "square"),
    "halt": ("#7f1d1d", "line"),
    "refused": ("#a21caf", "square"),
    "note": ("#64748b", "circle"),
}


@dataclass(frozen=True)
class StoryEvent:
    """One moment of the incident. ``kind`` picks its mark (``KINDS``); ``lane`` its row."""

    time: float
    kind: str
    lane: str
    title: str
    episode_id: str | None = None
    tool_call_id: str | None = None
    detail: str = ""  # a command, a log line: shown as code


@dataclass(frozen=True)
class IncidentStory:
    headline: str
    facts: Sequence[tuple[str, object]]
    lanes: Sequence[tuple[str, str]]  # (lane id, label), top to bottom
    events: Sequence[StoryEvent]
    notes: Sequence[str] = field(default_factory=tuple)
    run_id: str | None = None


STORY_CSS = (
    ".story-head{font-size:16px;margin:6px 0 12px}"
    ".story-legend span{margin-right:14px;white-space:nowrap}"
    ".story-legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}"
)


def _mark(kind: str, x: float, y: float, tip: str) -> str:
    color, shape = KINDS.get(kind, KINDS["note"])
    t = f"<title>{esc(tip)}</title>"
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{color}">{t}</rect>'
    if shape == "diamond":
        pts = f"{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} {x - 5:.1f},{y:.1f}"
        return f'<polygon points="{pts}" fill="{color}" fill-opacity="0.85">{t}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{color}" fill-opacity="0.85">{t}</circle>'


def swimlanes_svg(story: IncidentStory, *, width: int = 1100) -> str:
    """One row per lane, time across (seconds from the first event), the halt as a vertical line."""
    events = list(story.events)
    if not events:
        return "<p class='muted'>Nothing happened.</p>"
    lanes = [lid for lid, _ in story.lanes] or sorted({e.lane for e in events})
    labels = dict(story.lanes)
    row_h, pad_l, pad_r, pad_t, pad_b = 34, 150, 30, 10, 34
    height = pad_t + row_h * len(lanes) + pad_b
    t0 = min(e.time for e in events)
    t1 = max(e.time for e in events)
    span = max(t1 - t0, 1.0)
    w = width - pad_l - pad_r

    def sx(t: float) -> float:
        return pad_l + (t - t0) / span * w

    parts = [f'<svg width="100%" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, lane in enumerate(lanes):
        y = pad_t + row_h * i
        fill = "#fff" if i % 2 == 0 else "#f8fafc"
        parts.append(
            f'<rect x="{pad_l}" y="{y}" width="{w}" height="{row_h}" fill="{fill}" stroke="#e2e8f0"/>'
        )
        label = esc(labels.get(lane, lane))
        parts.append(f'<text x="{pad_l - 8}" y="{y + row_h / 2 + 4}" text-anchor="end">{label}</text>')
    for k in range(6):
        t = t0 + span * k / 5
        x = sx(t)
        parts.append(f'<text x="{x:.1f}" y="{height - 18}" text-anchor="middle">+{t - t0:.1f}s</text>')
    parts.append(
        f'<text x="{pad_l + w / 2}" y="{height - 4}" text-anchor="middle">'
        f"seconds since {esc(fmt_time(t0))}</text>"
    )
    for e in events:
        if e.lane not in lanes:
            continue
        ey = pad_t + row_h * lanes.index(e.lane) + row_h / 2
        tip = f"+{e.time - t0:.2f}s {e.title}" + (f" [{e.episode_id}]" if e.episode_id else "")
        if KINDS.get(e.kind, KINDS["note"])[1] == "line":
            x = sx(e.time)
            parts.append(
                f'<line x1="{x:.1f}" y1="{pad_t}" x2="{x:.1f}" y2="{pad_t + row_h * len(lanes)}" '
                f'stroke="{KINDS["halt"][0]}" stroke-width="2" stroke-dasharray="5,3">'
                f"<title>{esc(tip)}</title></line>"
            )
            parts.append(
                f'<text x="{x + 4:.1f}" y="{pad_t + 12}" fill="{KINDS["halt"][0]}">{esc(e.title[:40])}</text>'
            )
        else:
            parts.append(_mark(e.kind, sx(e.time), ey, tip))
    parts.append("</svg>")
    return f'<div class="chart">{"".join(parts)}</div>'


def _legend(story: IncidentStory) -> str:
    used = dict.fromkeys(e.kind for e in story.events)
    items = "".join(
        f'<span><i style="background:{KINDS.get(k, KINDS["note"])[0]}"></i>{esc(k)}</span>' for k in used
    )
    return f"<p class='story-legend muted'>{items}</p>"


def story_section(story: IncidentStory, report: CorrelationReport | None = None) -> str:
    """The story as HTML: headline, figures, timeline, notes, and every event in order."""
    ep_ref: dict[str | None, str] = {}
    if report is not None:
        ep_ref = {
            e.episode_id: e.id for e in report.episodes if e.run_id == story.run_id or story.run_id is None
        }
    t0 = min((e.time for e in story.events), default=0.0)
    labels = dict(story.lanes)
    rows = []
    for e in sorted(story.events, key=lambda e: e.time):
        ref = ep_ref.get(e.episode_id)
        ep = (
            Cell(f'<a href="#{esc(ref)}">{esc(e.episode_id)}</a>', e.episode_id)
            if ref
            else (e.episode_id or "")
        )
        color = KINDS.get(e.kind, KINDS["note"])[0]
        rows.append(
            [
                Cell(f"+{e.time - t0:.2f}s", e.time - t0),
                Cell(esc(fmt_time(e.time)), e.time),
                labels.get(e.lane, e.lane),
                Cell(f'<b style="color:{color}">{esc(e.kind)}</b>', e.kind),
                e.title,
                ep,
                Cell(code(e.tool_call_id)) if e.tool_call_id else "",
                Cell(code(e.detail[:600])) if e.detail else "",
            ]
        )
    notes = "".join(f"<p class='muted'>{esc(n)}</p>" for n in story.notes)
    return (
        f"<p class='story-head'><b>{esc(story.headline)}</b></p>"
        + cards(story.facts)
        + "<h3>Timeline</h3>"
        + _legend(story)
        + swimlanes_svg(story)
        + notes
        + "<h3>What happened, in order</h3>"
        + table(
            ["since start", "time", "lane", "kind", "what", "episode", "tool call", "detail"],
            rows,
            table_id="story-events",
            filter_box=True,
        )
    )

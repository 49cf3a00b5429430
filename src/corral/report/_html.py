"""A small toolkit for self-contained HTML reports: one file, inline CSS/JS/SVG, no network.

Building blocks return HTML strings and escape every value they are given, so a
report is composed by concatenation without an injection path from log data.
Tables get client-side sorting and filtering; charts are inline SVG.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

LEVEL_COLORS = {
    "critical": "#7f1d1d",
    "high": "#dc2626",
    "medium": "#ea580c",
    "low": "#ca8a04",
    "informational": "#64748b",
}

CSS = """
:root{--fg:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc;--card:#fff;--accent:#1d4ed8}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
header{background:#0f172a;color:#f8fafc;padding:18px 28px}
header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#cbd5e1}
main{padding:18px 28px;max-width:1400px}
h2{font-size:16px;margin:26px 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:130px}
.card .v{font-size:22px;font-weight:600}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line)}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f1f5f9;font-weight:600;cursor:pointer;user-select:none;white-space:nowrap}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
tr:hover td{background:#f8fafc}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
code{background:#f1f5f9;padding:1px 4px;border-radius:4px;word-break:break-all}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.muted{color:var(--muted)}
details{background:var(--card);border:1px solid var(--line);border-radius:8px;margin:8px 0;padding:0 12px}
details[open]{padding-bottom:12px}
summary{cursor:pointer;padding:10px 0;font-weight:600}
.filter{margin:6px 0;padding:5px 8px;width:320px;border:1px solid var(--line);border-radius:6px}
.warn{color:#b45309}
svg text{font:11px system-ui,sans-serif;fill:#334155}
.chart{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px}
"""

JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('sorted-asc');
      t.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc')});
      th.classList.add(asc?'sorted-asc':'sorted-desc');
      var body=t.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[i].getAttribute('data-v')||a.cells[i].textContent;
        var y=b.cells[i].getAttribute('data-v')||b.cells[i].textContent;
        var nx=parseFloat(x),ny=parseFloat(y);
        var r=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);
        return asc?r:-r;});
      rows.forEach(function(r){body.appendChild(r)});
    });
  });
});
document.querySelectorAll('input.filter').forEach(function(inp){
  inp.addEventListener('input',function(){
    var q=inp.value.toLowerCase();var t=document.getElementById(inp.getAttribute('data-table'));
    Array.prototype.forEach.call(t.tBodies[0].rows,function(r){
      r.style.display=r.textContent.toLowerCase().indexOf(q)>=0?'':'none';});
  });
});
document.body.setAttribute('data-ready','1');
"""


def esc(value: object) -> str:
    """HTML-escape any value (None is an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def fmt_time(t: float | None) -> str:
    """UTC wall time with milliseconds, or an empty string."""
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def badge(level: str) -> str:
    """A severity level as a coloured pill."""
    color = LEVEL_COLORS.get(level, "#475569")
    return f'<span class="badge" style="background:{color}">{esc(level)}</span>'


def code(text: object) -> str:
    """Escaped text in a monospace span (commands, paths, ids)."""
    return f"<code>{esc(text)}</code>"


@dataclass(frozen=True)
class Cell:
    """A pre-rendered table cell: ``html`` is trusted markup, ``sort`` the value to sort on."""

    html: str
    sort: str | float | None = None


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    table_id: str | None = None,
    filter_box: bool = False,
) -> str:
    """A sortable table; plain values are escaped, ``Cell`` values are inserted as they are."""
    tid = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body: list[str] = []
    for row in rows:
        cells = []
        for v in row:
            if isinstance(v, Cell):
                dv = f' data-v="{esc(v.sort)}"' if v.sort is not None else ""
                cells.append(f"<td{dv}>{v.html}</td>")
            else:
                cells.append(f"<td>{esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    box = ""
    if filter_box and table_id:
        box = f'<input class="filter" placeholder="Filter rows..." data-table="{esc(table_id)}">'
    rows_html = "".join(body)
    return (
        f'{box}<table class="sortable"{tid}><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>'
    )


def cards(items: Iterable[tuple[str, object]]) -> str:
    """Headline numbers, one card per (label, value)."""
    inner = "".join(
        f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>'
        for k, v in items
    )
    return f'<div class="cards">{inner}</div>'


def details(summary_html: str, body_html: str, *, open_: bool = False, anchor: str | None = None) -> str:
    """A collapsible block; ``summary_html`` and ``body_html`` are trusted markup."""
    o = " open" if open_ else ""
    a = f' id="{esc(anchor)}"' if anchor else ""
    return f"<details{o}{a}><summary>{summary_html}</summary>{body_html}</details>"


def section(title: str, body_html: str) -> str:
    """A titled part of the page; ``body_html`` is trusted markup."""
    return f"<section><h2>{esc(title)}</h2>{body_html}</section>"


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    color: str
    label: str  # tooltip text
    hollow: bool = False  # drawn as a ring, e.g. for evidence that is not certain


def scatter_svg(
    points: Sequence[Point],
    *,
    width: int = 1100,
    height: int = 260,
    x_label: str = "",
    y_label: str = "",
    x_is_time: bool = False,
    integer_y: bool = False,
) -> str:
    """An inline SVG scatter plot with axes, ticks and a tooltip per point."""
    pad_l, pad_r, pad_t, pad_b = 60, 40, 12, 38
    if not points:
        return f'<svg width="{width}" height="60" role="img"><text x="10" y="30">No data</text></svg>'
    xs = [p.x for p in points]
    ys = [p.y for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def sx(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return pad_t + h - (y - y0) / (y1 - y0) * h

    parts = [f'<svg width="100%" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    parts.append(f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="#fff" stroke="#cbd5e1"/>')
    for i in range(5):
        fx = x0 + (x1 - x0) * i / 4
        fy = y0 + (y1 - y0) * i / 4
        show_y = not integer_y or fy == round(fy)
        label = fmt_time(fx)[11:19] if x_is_time else f"{fx:g}"
        parts.append(
            f'<line x1="{sx(fx):.1f}" y1="{pad_t}" x2="{sx(fx):.1f}" y2="{pad_t + h}" stroke="#f1f5f9"/>'
        )
        parts.append(f'<text x="{sx(fx):.1f}" y="{pad_t + h + 14}" text-anchor="middle">{esc(label)}</text>')
        if show_y:
            parts.append(
                f'<text x="{pad_l - 6}" y="{sy(fy) + 4:.1f}" text-anchor="end">{esc(f"{fy:.4g}")}</text>'
            )
    parts.append(f'<text x="{pad_l + w / 2}" y="{height - 4}" text-anchor="middle">{esc(x_label)}</text>')
    parts.append(_y_label(pad_t + h / 2, y_label))
    for p in points:
        parts.append(
            f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="4.5" {_paint(p)}>'
            f"<title>{esc(p.label)}</title></circle>"
        )
    parts.append("</svg>")
    return f'<div class="chart">{"".join(parts)}</div>'


def bars_svg(
    values: Sequence[tuple[str, float]], *, width: int = 1100, height: int = 180, y_label: str = ""
) -> str:
    """An inline SVG bar chart of labelled values."""
    if not values:
        return f'<svg width="{width}" height="60" role="img"><text x="10" y="30">No data</text></svg>'
    pad_l, pad_b, pad_t = 50, 30, 10
    w, h = width - pad_l - 10, height - pad_b - pad_t
    top = max(v for _, v in values) or 1.0
    bw = min(w / len(values), 60.0)
    parts = [f'<svg width="100%" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, (label, v) in enumerate(values):
        bh = v / top * h
        x = pad_l + i * bw
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{pad_t + h - bh:.1f}" width="{max(bw - 2, 1):.1f}" height="{bh:.1f}" '
            f'fill="#2563eb"><title>{esc(label)}: {esc(f"{v:g}")}</title></rect>'
        )
        if len(values) <= 40 or i % max(1, len(values) // 20) == 0:
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{height - 12}" text-anchor="middle">{esc(label)}</text>'
            )
    parts.append(f'<text x="{pad_l - 6}" y="{pad_t + 10}" text-anchor="end">{esc(f"{top:g}")}</text>')
    parts.append(f'<text x="{pad_l - 6}" y="{pad_t + h}" text-anchor="end">0</text>')
    parts.append(_y_label(pad_t + h / 2, y_label))
    parts.append("</svg>")
    return f'<div class="chart">{"".join(parts)}</div>'


def _paint(p: Point) -> str:
    c = esc(p.color)
    return f'fill="none" stroke="{c}" stroke-width="2"' if p.hollow else f'fill="{c}" fill-opacity="0.8"'


def _y_label(y: float, text: str) -> str:
    return f'<text transform="translate(12,{y}) rotate(-90)" text-anchor="middle">{esc(text)}</text>'


def page(title: str, body_html: str, *, subtitle: str = "", extra_css: str = "", script: str = "") -> str:
    """A complete self-contained document; a strict CSP forbids any network fetch when viewed."""
    csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}{extra_css}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"<main>{body_html}</main><script>{JS}{script}</script></body></html>\n"
    )

"""The HTML report: one self-contained file that real headless Chromium renders without console errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chromium_support import chromium
from corral.correlate import CorrelationReport, correlate
from corral.report import Cell, badge, cards, details, page, render_correlation_html, scatter_svg, table
from corral.report._html import Point

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"


def _report() -> CorrelationReport:
    logs = [p for p in sorted(LOGS.iterdir()) if not p.name.startswith(("trace", "generic"))]
    return correlate([LOGS / "trace_basic.jsonl"], logs, skew_s=2).report()


def test_report_is_self_contained() -> None:
    html = render_correlation_html(_report())
    assert html.startswith("<!DOCTYPE html>")
    # Nothing is fetched: no external scripts, styles, images, fonts or links.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", html)
    assert "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html
    assert "python miner.py --pool 203.0.113.50:3333" in html  # drill-down reaches the command
    assert "tests/data/logs/aws_v2_default.log:1" in html  # evidence names file and line


def test_report_renders_in_headlesschromium(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text(render_correlation_html(_report()), encoding="utf-8")
    shot = tmp_path / "report.png"
    proc = chromium(out, tmp_path, f"--screenshot={shot}", "--window-size=1400,2000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert proc.console == []
    dom = chromium(out, tmp_path, "--dump-dom")
    assert 'data-ready="1"' in dom.stdout  # the page's script ran to its end
    assert dom.console == []


def test_console_error_detection_works(tmp_path: Path) -> None:
    # The check above is only worth something if a broken page is caught.
    bad = tmp_path / "bad.html"
    bad.write_text(page("x", "<p>x</p>", script="undefinedFunction();"))
    proc = chromium(bad, tmp_path, "--dump-dom")
    assert any("undefinedFunction" in m for m in proc.console)


def test_empty_report_renders(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"tool_call_id": "c1", "start": 1795000000, "end": 1795000001}\n')
    log = tmp_path / "f.log"
    log.write_text("2 123456789012 eni-1 192.0.2.9 198.51.100.1 1 2 6 1 1 1795000000 1795000001 ACCEPT OK\n")
    html = render_correlation_html(correlate([trace], [log]).report())
    assert "No incidents" in html
    out = tmp_path / "empty.html"
    out.write_text(html)
    proc = chromium(out, tmp_path, "--dump-dom")
    assert 'data-ready="1"' in proc.stdout and proc.console == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ('" onmouseover="x', "&quot; onmouseover=&quot;x"),
        (None, "<td></td>"),
    ],
)
def test_toolkit_escapes_values(value: object, expected: str) -> None:
    assert expected in table(["h"], [[value]])


def test_toolkit_building_blocks() -> None:
    t = table(["a", "b"], [[Cell("<b>x</b>", 2), 1]], table_id="t1", filter_box=True)
    assert '<td data-v="2"><b>x</b></td>' in t and 'data-table="t1"' in t
    assert "critical" in badge("critical") and "#7f1d1d" in badge("critical")
    assert '<div class="v">3</div>' in cards([("n", 3)])
    assert details("<b>s</b>", "body", anchor="x").startswith('<details id="x">')
    svg = scatter_svg([Point(1.0, 2.0, "#f00", "<tip>")], x_label="t", y_label="step")
    assert "<svg" in svg and "&lt;tip&gt;" in svg
    assert "No data" in scatter_svg([])

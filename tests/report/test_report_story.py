"""The incident's story opens the report: headline, figures, swimlane timeline, events linked to episodes.

The run is a real event store and flow log correlated as ``corral correlate`` does;
the story is what a live watcher told of it. Rendered in real headless Chromium.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from chromium_support import CHROMIUM, FLAGS, screenshot
from corral.correlate import correlate
from corral.events import Event, EventStore, ToolCall, TraceContext
from corral.report import IncidentStory, StoryEvent, render_correlation_html, swimlanes_svg

T0 = 1795200000.0
NODE, SB, POOL = "192.0.2.10", "192.0.2.101", "203.0.113.33"


def _report(tmp_path: Path):  # type: ignore[no-untyped-def]
    with EventStore(tmp_path / "events.db") as store:
        for turn, cmd in enumerate(["ls", f"nohup ./bench --pool {POOL}:3333 &", "sleep 5"]):
            ctx = TraceContext(
                run_id="r1", step=0, episode_id="ep-0005", turn=turn, tool_call_id=f"tc-{turn}"
            )
            store.append(
                Event(
                    time_ns=int((T0 + turn * 2 + 1) * 1e9),
                    host=NODE,
                    sandbox_id="sb-5",
                    ctx=ctx,
                    data=ToolCall(
                        command=cmd,
                        start_ns=int((T0 + turn * 2) * 1e9),
                        end_ns=int((T0 + turn * 2 + 1) * 1e9),
                        exit_code=0,
                        sandbox_ip=SB,
                        host_ip=NODE,
                    ),
                )
            )
    log = tmp_path / "fw.log"
    log.write_text(
        "".join(
            f"2 1 eni-1 {SB} {POOL} {40100 + i} 3333 6 3 180 {int(T0 + 3 + i)} {int(T0 + 4 + i)} REJECT OK\n"
            for i in range(3)
        )
    )
    return correlate([tmp_path / "events.db"], [log]).report()


def _story() -> IncidentStory:
    ev = [
        StoryEvent(
            T0 + 2,
            "started",
            "miner",
            "cryptominer started in the background: ran",
            "ep-0005",
            "tc-1",
            f"nohup ./bench --pool {POOL}:3333 &",
        ),
        *(
            StoryEvent(
                T0 + 3 + i, "firewall", "firewall", f"line {i + 1}: {SB} -> {POOL}:3333 REJECT", "ep-0005"
            )
            for i in range(3)
        ),
        *(
            StoryEvent(
                T0 + 3.5 + i, "attributed", "watcher", f"line {i + 1} -> ep-0005 turn 1", "ep-0005", "tc-1"
            )
            for i in range(3)
        ),
        StoryEvent(
            T0 + 5.6, "quarantine", "response", "ep-0005 quarantined (3 attributed records)", "ep-0005"
        ),
        StoryEvent(T0 + 5.7, "halt", "response", "run halted: 3 attributed violations"),
        StoryEvent(T0 + 6, "note", "other", "<script>alert('x')</script>"),
    ]
    return IncidentStory(
        headline="A cryptominer (ep-0005) tried; the run halted 3.7 s after the first violation.",
        facts=[("first violation to halt", "3.7 s"), ("episodes quarantined", 1)],
        lanes=[
            ("miner", "miner episode ep-0005"),
            ("other", "other episodes"),
            ("firewall", "node firewall"),
            ("watcher", "watcher"),
            ("response", "quarantine and halt"),
        ],
        events=ev,
        notes=["The miner is a stand-in."],
        run_id="r1",
    )


def test_the_report_opens_with_the_story_linked_to_the_drill_down(tmp_path: Path) -> None:
    rep = _report(tmp_path)
    html = render_correlation_html(rep, story=_story())
    assert html.index("id='story'") < html.index('class="cards"') < html.index("Timeline of violations")
    [ep] = rep.episodes
    story = html[html.index("id='story'") : html.index("Timeline of violations")]
    assert f'href="#{ep.id}"' in story and "3.7 s" in story and "The miner is a stand-in." in story
    assert "&lt;script&gt;alert" in story and "<script>alert" not in html
    assert render_correlation_html(rep).count("id='story'") == 0  # without a story, the report as before


def test_swimlanes_draw_a_mark_per_event_and_the_halt_as_a_line() -> None:
    svg = swimlanes_svg(_story())
    assert svg.count("<polygon") == 3 and svg.count("<circle") == 5 and svg.count("<line") == 1
    assert svg.count('<rect x="150"') == 5  # one row per lane
    assert "run halted" in svg and "+5.70s" not in svg.split("<title>")[0]


def test_the_story_renders_in_chromium(tmp_path: Path) -> None:
    assert CHROMIUM
    out = tmp_path / "report.html"
    out.write_text(render_correlation_html(_report(tmp_path), story=_story()), encoding="utf-8")
    p = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln] == []
    assert (
        'data-ready="1"' in p.stdout
        and "<h2>The incident</h2>" in p.stdout
        and 'id="story-events"' in p.stdout
    )
    shot, r = screenshot(out, tmp_path)
    assert r.returncode == 0 and shot.stat().st_size > 20_000

"""``corral demo`` end to end: the RL loop, its events, a firewall log, the correlation and the report."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from corral.correlate import CorrelationReport, correlate
from corral.demo._firewall import write_flow_log
from corral.demo._loop import EpisodeOutcome, LoopStats, run_loop
from corral.events import EventStore, trace_records, write_trace_jsonl
from corral.harness import Harness
from corral.policy import Policy
from corral.report import render_correlation_html
from corral.respond import Responder

OUTPUT_FILES = ("events.db", "trace.jsonl", "node-firewall.flowlog", "correlation.json", "report.html")


@dataclass(frozen=True)
class DemoConfig:
    episodes: int = 64
    workers: int = 4
    seed: int = 7
    misbehave_rate: float = 0.25
    episodes_per_step: int = 8
    out: Path | None = None


@dataclass(frozen=True)
class DemoOutput:
    out_dir: Path
    store: Path
    trace: Path
    firewall_log: Path
    correlation: Path
    report: Path
    episodes: list[EpisodeOutcome]
    stats: LoopStats
    correlation_report: CorrelationReport


def run_demo(cfg: DemoConfig, console: Console) -> DemoOutput:
    policy = Policy.default()
    run_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    home = Path(os.environ.get("CORRAL_HOME", "~/.corral")).expanduser()
    out = cfg.out or home / "demo" / run_id
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "events.db"
    # A rerun into the same folder starts clean: the correlation reads every call in the store.
    for name in OUTPUT_FILES:
        for p in out.glob(name + "*"):  # the store's -wal/-shm files too
            p.unlink()
    console.print(
        f"[bold]Corral demo[/] run [cyan]{run_id}[/]: {cfg.episodes} episodes, "
        f"{cfg.workers} at a time, default policy"
    )
    with EventStore(store_path) as store:
        harness = Harness(policy, store=store)
        responder = Responder(policy, event_sinks=[store.append], host=harness.host)
        try:
            with Progress(
                TextColumn("[bold]episodes"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "calls {task.fields[calls]}  [red]blocked {task.fields[blocked]}[/]  "
                    "[yellow]alerts {task.fields[alerts]}[/]"
                ),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress:
                task = progress.add_task("episodes", total=cfg.episodes, calls=0, blocked=0, alerts=0)

                def on_episode(ep: EpisodeOutcome, st: LoopStats) -> None:
                    progress.update(
                        task,
                        advance=1,
                        calls=st.calls,
                        blocked=st.blocked,
                        alerts=sum(st.alerts_by_category.values()),
                    )

                episodes, stats = run_loop(
                    harness,
                    responder,
                    run_id=run_id,
                    episodes=cfg.episodes,
                    workers=cfg.workers,
                    seed=cfg.seed,
                    misbehave_rate=cfg.misbehave_rate,
                    episodes_per_step=cfg.episodes_per_step,
                    on_episode=on_episode,
                )
        finally:
            responder.close()
            harness.close()
        store.flush()
        trace = out / "trace.jsonl"
        with trace.open("w") as f:
            write_trace_jsonl(trace_records(store, run_id=run_id), f)
    fw = out / "node-firewall.flowlog"
    calls = [c for ep in episodes for c in ep.calls]
    write_flow_log(fw, calls, harness.host, cfg.seed)
    result = correlate([store_path], [fw], skew_s=2.0)
    report = result.report()
    corr = out / "correlation.json"
    corr.write_text(json.dumps(report.to_jsonable(), indent=1))
    html = out / "report.html"
    html.write_text(render_correlation_html(report, title=f"Corral demo: {run_id}"))
    return DemoOutput(out, store_path, trace, fw, corr, html, episodes, stats, report)


def print_summary(d: DemoOutput, console: Console) -> None:
    st = d.stats
    t = Table(title="Run summary", show_header=False)
    t.add_row("episodes", str(st.episodes))
    t.add_row("tool calls", str(st.calls))
    t.add_row("calls blocked", str(st.blocked))
    t.add_row("episodes quarantined", str(st.quarantined))
    t.add_row("episodes ended early", str(st.truncated))
    rewards = [e.reward for e in d.episodes]
    t.add_row("mean reward", f"{sum(rewards) / max(1, len(rewards)):.2f}")
    for cat, n in sorted(st.alerts_by_category.items(), key=lambda kv: -kv[1]):
        t.add_row(f"alerts: {cat}", str(n))
    console.print(t)
    guilty = Table(title="Guilty episodes and commands")
    rows = []
    for ep in d.episodes:
        for c in ep.calls:
            if c.result.alerts:
                verdict = "[red]blocked[/]" if c.result.blocked else "[yellow]alerted[/]"
                cats = ",".join(sorted({a.category for a in c.result.alerts}))
                rows.append(
                    (f"{c.episode_id} s{c.step} t{c.turn}", verdict, cats, " ".join(c.command.split()))
                )
    cats_w = max((len(r[2]) for r in rows), default=6)
    cmd_w = max(16, console.width - 20 - 9 - cats_w - 13)
    for col in ("episode", "verdict", "alerts", "command"):
        guilty.add_column(col, no_wrap=True)
    for where, verdict, cats, cmd in rows:
        guilty.add_row(where, verdict, cats, cmd if len(cmd) <= cmd_w else cmd[: cmd_w - 1] + "…")
    console.print(guilty)
    rep = d.correlation_report
    violations = [a for a in rep.attributions if a.tool_call_id is not None]
    console.print(
        f"[bold]Firewall log → tool calls:[/] {rep.records} records, {rep.attributed} attributed, "
        f"{len(violations)} to exactly one call, {len(rep.incidents)} incidents"
    )
    for a in violations:
        console.print(
            f"  {a.remote_ip}:{a.remote_port} ← {a.episode_id} step {a.step} turn {a.turn} "
            f"({a.method}, confidence {a.confidence:.2f})"
        )
    console.print("[bold]Written:[/]")
    for label, p in (
        ("events (SQLite)", d.store),
        ("trace (JSON lines)", d.trace),
        ("node firewall log", d.firewall_log),
        ("correlation (JSON)", d.correlation),
        ("report (HTML)", d.report),
    ):
        console.print(f"  {label:<20} {p}")

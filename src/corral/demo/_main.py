"""``corral demo`` end to end: the range, the RL loop, the live firewall log and watcher, the report.

While the loop runs, the simulated node firewall writes a REJECT line for each
connection Corral's egress refuses, and a ``Watcher`` follows that file and the event
store: each attribution is shown as it is made and handed to the responder, which
quarantines a guilty episode and, on a burst across the run, trips the circuit breaker
that halts the run. Afterwards the whole log is correlated again in batch for the
report, which opens with the incident's story.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from corral.correlate import CorrelationReport, Watcher, WatchItem, correlate, is_violation
from corral.demo._firewall import NodeFirewall
from corral.demo._live import LiveView
from corral.demo._loop import CallRecord, EpisodeOutcome, Loop, LoopSettings, LoopStats
from corral.demo._range import OUTSIDE_HOST_IP, POOL_IP, POOL_PORT, DemoRange
from corral.demo._store import RunStore
from corral.demo._story import Chronicle, LiveAttribution
from corral.events import EventStore, trace_lines, write_trace_jsonl
from corral.harness import Harness, node_address
from corral.policy import Policy
from corral.report import render_correlation_html
from corral.respond import CallVerdict, Responder

OUTPUT_FILES = (
    "events.db",
    "trace.jsonl",
    "node-firewall.flowlog",
    "live-attributions.jsonl",
    "correlation.json",
    "summary.json",
    "policy.yaml",
    "report.html",
)
# What the demo changes in the embedded default, and why (printed, and kept in policy.yaml).
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "processes": {"lifetime": "episode"},  # a process may outlive its call (never its sandbox)
    "network": {"mode": "allowlist", "allow": []},  # each sandbox its own netns; nothing allowed
    "monitoring": {"sustained_cpu_window_s": 3.0},  # a demo-length window for miner-shaped CPU
    "response": {"attributed": {"episode_threshold": 3, "run_threshold": 6, "run_window_s": 120.0}},
}


def demo_policy() -> Policy:
    """The embedded default with ``DEMO_SETTINGS`` on top."""
    data = Policy.default().model_dump(mode="json")
    for section, values in DEMO_SETTINGS.items():
        for key, value in values.items():
            if isinstance(value, dict):
                data[section][key].update(value)
            else:
                data[section][key] = value
    data["name"] = "demo"
    return Policy.model_validate(data)


@dataclass(frozen=True)
class DemoConfig:
    episodes: int = 64
    workers: int = 4
    seed: int = 7
    misbehave_rate: float = 0.25
    episodes_per_step: int = 8
    out: Path | None = None
    halt: bool = True  # obey the circuit breaker (``--no-halt``: keep going, to show what it prevented)


@dataclass(frozen=True)
class DemoOutput:
    out_dir: Path
    store: Path
    trace: Path
    firewall_log: Path
    live_attributions: Path
    correlation: Path
    summary: Path
    policy: Path
    report: Path
    run_id: str
    episodes: list[EpisodeOutcome]
    stats: LoopStats
    correlation_report: CorrelationReport
    figures: dict[str, object]
    config: DemoConfig

    @property
    def halt_obeyed(self) -> bool:
        return self.config.halt


def _out_dir(cfg: DemoConfig, run_id: str) -> Path:
    home = Path(os.environ.get("CORRAL_HOME", "~/.corral")).expanduser()
    out = cfg.out or home / "demo" / run_id
    out.mkdir(parents=True, exist_ok=True)
    # A rerun into the same folder starts clean: the correlation reads every call in the store.
    for name in OUTPUT_FILES:
        for p in out.glob(name + "*"):  # the store's -wal/-shm files too
            p.unlink()
    return out


def _banner(console: Console, cfg: DemoConfig, run_id: str, out: Path) -> None:
    console.print(f"[bold]Corral demo[/] run [cyan]{run_id}[/]", highlight=False)
    console.print(
        f"{cfg.episodes} episodes of a scripted agent, {cfg.workers} at a time, each in its own sandbox. "
        "Policy: the embedded default, plus processes.lifetime episode, network allowlist (empty), "
        "sustained-CPU window 3 s, attributed thresholds 3 per episode / 6 per run "
        f"(all in {out / 'policy.yaml'}).",
        highlight=False,
    )
    console.print(
        f"The outside host {OUTSIDE_HOST_IP} (OpenSSH) and the pool {POOL_IP}:{POOL_PORT} (stratum) live in "
        "network namespaces this demo created; the demo runs in one with no uplink.",
        highlight=False,
    )
    console.print(
        f"A watcher follows the node firewall log as it is written: {out / 'node-firewall.flowlog'}. "
        f"Commands below are folded; one call in full: corral events --store {out / 'events.db'} --call ID",
        highlight=False,
    )


def run_demo(cfg: DemoConfig, console: Console) -> DemoOutput:
    """Run the demo (needs root: namespaces, sandboxes, an sshd); everything it writes goes to ``cfg.out``."""
    policy = demo_policy()
    run_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    out = _out_dir(cfg, run_id)
    (out / "policy.yaml").write_text(
        "# corral demo: the embedded default policy with the demo's settings on top\n"
        + yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False)
    )
    _banner(console, cfg, run_id, out)
    chron = Chronicle(run_id, obey_halt=cfg.halt)
    rng = DemoRange.start()  # from here on this thread, and every thread it starts, is in the lab netns
    try:
        episodes, stats = _run(cfg, console, policy, run_id, out, chron)
        chron.targets_seen = rng.seen()
    finally:
        rng.close()
    return _finish(cfg, run_id, out, chron, episodes, stats)


def _run(
    cfg: DemoConfig, console: Console, policy: Policy, run_id: str, out: Path, chron: Chronicle
) -> tuple[list[EpisodeOutcome], LoopStats]:
    node_ip = node_address()
    fw = NodeFirewall(out / "node-firewall.flowlog", node_ip, seed=cfg.seed)
    live_path = (out / "live-attributions.jsonl").open("w", buffering=1)
    t0 = time.time()
    view = LiveView(console, cfg.episodes, t0)
    store = RunStore(out / "events.db")
    try:
        harness = Harness(policy, store=store, sinks=[fw.observe], host=node_ip)
        responder = Responder(policy, event_sinks=[store.append], host=node_ip)
        sec = policy.response.attributed

        def on_item(item: WatchItem) -> None:
            a = item.attribution
            v = item.verdict
            live = LiveAttribution(
                time.time(), item.latency_s, a, bool(v and v.quarantine), bool(v and v.halted)
            )
            new_q, first_halt = chron.attributed(live)
            live_path.write(
                json.dumps({"made": live.made_s, "latency_s": item.latency_s, **a.model_dump()}) + "\n"
            )
            if is_violation(a):
                view.attribution(a, item.latency_s)
            if new_q and a.episode_id:
                view.quarantine(a.episode_id, v.episode_count if v else 0, sec.episode_window_s)
            if first_halt and chron.halt is not None:
                view.halt(chron.halt[1], sec.run_window_s, cfg.halt)

        def on_call(rec: CallRecord, verdict: CallVerdict) -> None:
            chron.call(rec)
            view.call(rec, verdict)

        # The harness commits each call when it ends, so a record waiting for its call (a process
        # left running) needs a second, not corral watch's default 5 s, before it is decided.
        watcher = Watcher(
            [fw.path],
            store=store.path,
            responder=responder,
            from_start=True,
            poll_s=0.1,
            settle_s=1.0,
            on_item=on_item,
        )
        settings = LoopSettings(
            run_id, cfg.episodes, cfg.workers, cfg.seed, cfg.misbehave_rate, cfg.episodes_per_step, cfg.halt
        )
        loop = Loop(harness, responder, store, settings, on_call=on_call, on_episode=view.episode)
        try:
            watcher.start()
            with view:
                view.note("starting the sandboxes' egress and monitors (a few seconds)")
                try:
                    episodes = loop.run()
                    store.flush()
                    time.sleep(0.3)  # the last records of the last sandboxes: read them before closing
                    watcher.step()
                finally:
                    watcher.close()
        finally:
            responder.close()
            harness.close()
            fw.close()
    finally:
        live_path.close()
        store.flush()
        store.close()
    chron.episodes = episodes
    chron.firewall = list(fw.records)
    return episodes, loop.stats


def _finish(
    cfg: DemoConfig,
    run_id: str,
    out: Path,
    chron: Chronicle,
    episodes: list[EpisodeOutcome],
    stats: LoopStats,
) -> DemoOutput:
    store_path, fw_path = out / "events.db", out / "node-firewall.flowlog"
    trace = out / "trace.jsonl"
    with EventStore(store_path) as store, trace.open("w") as f:
        write_trace_jsonl(trace_lines(store, run_id=run_id), f)
    report = correlate([store_path], [fw_path], skew_s=2.0).report()
    corr = out / "correlation.json"
    corr.write_text(json.dumps(report.to_jsonable(), indent=1))
    figures = chron.figures()
    summary = out / "summary.json"
    summary.write_text(json.dumps(figures, indent=1, default=str))
    html = out / "report.html"
    html.write_text(render_correlation_html(report, title=f"Corral demo: {run_id}", story=chron.story()))
    return DemoOutput(
        out,
        store_path,
        trace,
        fw_path,
        out / "live-attributions.jsonl",
        corr,
        summary,
        out / "policy.yaml",
        html,
        run_id,
        episodes,
        stats,
        report,
        figures,
        cfg,
    )

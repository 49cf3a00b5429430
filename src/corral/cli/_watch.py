"""``corral watch``: follow infrastructure logs live and print each attribution as it is made."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from corral.cli._app import app, fail, missing_extra
from corral.cli._common import load_policy
from corral.cli._correlate import parse_duration
from corral.errors import CorralError

if TYPE_CHECKING:
    from rich.console import Console

    from corral.correlate import Attribution, WatchItem

_STYLE = {"deny": "bold red", "alert": "bold red"}


@app.command("watch")
def watch_cmd(
    log: list[Path] = typer.Option(
        ..., "--log", help="Infrastructure log to follow (format detected; repeatable)."
    ),
    trace: list[Path] = typer.Option([], "--trace", help="Trace file to follow as it grows (repeatable)."),
    store: Path | None = typer.Option(None, "--store", help="Event store of the run to follow."),
    skew: str = typer.Option("2s", "--skew", help="Largest clock difference between logs and trace."),
    json_out: bool = typer.Option(
        False, "--json", help="One JSON line per attribution (fields as correlate --json)."
    ),
    from_start: bool = typer.Option(
        False, "--from-start", help="Read what the logs already hold, then follow."
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="Read every --log as this format instead of detecting."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Policy whose response.attributed section sets quarantine and halt thresholds."
    ),
    settle: str = typer.Option("5s", "--settle", help="How long node-only evidence waits for its calls."),
    stop_after: str | None = typer.Option(
        None, "--stop-after", help="Stop after this long (for scripts); default: until interrupted."
    ),
) -> None:
    """Follow logs (like tail -F) and the run's trace or event store; attribute each record as it comes.

    Violations attributed to an episode go to the responder: a burst for one episode quarantines it, a
    burst across a run trips the circuit breaker (printed, and recorded in the store when one is given).
    """
    try:  # pyarrow: the correlate extra
        from corral.correlate import Watcher, make_reader
    except ModuleNotFoundError as exc:
        missing_extra("correlate", "watch", exc)
    from corral.events import EventStore
    from corral.respond import Responder

    if not trace and store is None:
        fail("give the run's calls: --trace FILE or --store DB")
    if trace and store is not None:
        fail("give either --trace or --store, not both")
    pol = load_policy(policy)
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=json_out, highlight=False, soft_wrap=True)
    decisions_store: EventStore | None = None
    try:
        skew_s, settle_s = parse_duration(skew), parse_duration(settle)
        limit_s = parse_duration(stop_after) if stop_after else None
        reader = make_reader(fmt) if fmt else None
        responder = Responder(pol)
        watcher = Watcher(
            log,
            traces=trace,
            store=store,
            skew_s=skew_s,
            from_start=from_start,
            formats=reader,
            responder=responder,
            settle_s=settle_s,
        )
        if store is not None:  # the responder's decisions go on record beside the run's events
            decisions_store = EventStore(store)
            responder.add_event_sink(decisions_store.append)
    except CorralError as exc:
        if decisions_store is not None:
            decisions_store.close()
        fail(exc)
    for err in watcher.errors:
        console.print(f"[yellow]corral watch:[/] {escape(err)}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        threading.Thread(target=watcher.close, daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if limit_s is not None:
        timer = threading.Timer(limit_s, lambda: on_signal(signal.SIGTERM, None))
        timer.daemon = True
        timer.start()
    console.print(  # on stderr with --json: a script may wait for this line before appending
        f"[bold]corral watch[/]: following {len(log)} log(s), calls from "
        f"{store or ', '.join(map(str, trace))}; clock skew {skew_s:g} s; "
        f"{'from the start' if from_start else 'new lines only'}"
    )
    errors_seen = len(watcher.errors)
    try:
        with watcher:
            for item in watcher.items():
                _print(item, json_out, console)
                if len(watcher.errors) > errors_seen:
                    for err in watcher.errors[errors_seen:]:
                        console.print(f"[yellow]corral watch:[/] {escape(err)}")
                    errors_seen = len(watcher.errors)
    except CorralError as exc:
        fail(exc)
    finally:
        responder.close()
        if decisions_store is not None:
            decisions_store.close()
    st = watcher.stats()
    console.print(
        f"[bold]{st.records}[/] records, [bold]{st.attributed}[/] attributed, "
        f"{st.unattributed} unattributed, {st.malformed_lines} malformed lines, {st.calls} tool calls; "
        f"{st.quarantined} episode(s) quarantined"
        + ("; [bold red]run halted[/]" if st.halted else "")
        + f"; slowest attribution {st.max_latency_s:.2f} s after its line was read"
    )


def _print(item: WatchItem, json_out: bool, console: Console) -> None:
    from rich.markup import escape

    a = item.attribution
    if json_out:
        sys.stdout.write(json.dumps(a.model_dump(mode="json")) + "\n")
        sys.stdout.flush()
    else:
        console.print(_line(a))
    v = item.verdict
    if v is not None:
        for r in v.responses:
            who = f"run {a.run_id}" if r.action != "quarantine" else f"episode {a.run_id}/{a.episode_id}"
            console.print(
                f"[bold red]{r.action}[/] {escape(who)}: {r.detail.get('count')} attributed violations "
                f"within {r.detail.get('window_s')} s"
            )


def _line(a: Attribution) -> str:
    from rich.markup import escape

    from corral.correlate import is_violation  # the correlate extra, present once watch_cmd ran
    from corral.report import endpoint

    style = _STYLE.get(a.action or "", "") if is_violation(a) else "dim"
    who = a.tool_call_id or (
        f"episode {a.episode_id} ({a.candidate_count} calls)"
        if a.episode_id
        else f"{a.candidate_count} candidates"
    )
    flow = f"{endpoint(a.src_ip, a.src_port)} -> {endpoint(a.dst_ip, a.dst_port)}"
    action = f"[{style}]{escape(a.action or a.kind)}[/]" if style else escape(a.action or a.kind)
    return (
        f"{escape(a.log_file)}:{a.log_line} {action} {escape(flow)} {escape(a.signature or '')} -> "
        f"run {escape(str(a.run_id))} step {a.step} [bold]{escape(who)}[/] ({a.method}, {a.confidence:.2f})"
    )

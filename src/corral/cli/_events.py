"""``corral events``: query the event store as a table, JSON lines, or an export file."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from corral.cli._app import app, fail
from corral.errors import CorralError, InputError
from corral.events import EXPORT_FORMATS, Event, EventStore, default_store_path, export_events, parse_time_ns

_SUMMARY_KEYS = (
    "CommandLine",
    "DestinationHostname",
    "DestinationIp",
    "DestinationPort",
    "QueryName",
    "decision",
    "title",
    "action",
    "reason",
    "command",
    "exit_code",
    "cpu_time_s",
    "memory_peak_bytes",
    "status",
    "message",
)


def _summary(event: Event) -> str:
    flat = event.flat()
    parts = [f"{k}={flat[k]}" for k in _SUMMARY_KEYS if flat.get(k) not in (None, "", [], {})]
    return " ".join(parts)


def _table(events: list[Event]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for col in ("seq", "time", "type", "sandbox", "run", "episode", "step", "turn", "call", "summary"):
        table.add_column(col, overflow="fold")
    for e in events:
        c = e.ctx
        table.add_row(
            str(e.seq),
            e.flat()["time"],
            e.type,
            e.sandbox_id or "",
            c.run_id or "",
            c.episode_id or "",
            "" if c.step is None else str(c.step),
            "" if c.turn is None else str(c.turn),
            c.tool_call_id or "",
            _summary(e),
        )
    return table


@app.command("events")
def events(
    json_out: bool = typer.Option(False, "--json", help="One JSON line per event (Event.flat())."),
    run: str | None = typer.Option(None, "--run", help="Only this run id."),
    episode: str | None = typer.Option(None, "--episode", help="Only this episode id."),
    sandbox: str | None = typer.Option(None, "--sandbox", help="Only this sandbox id."),
    call: str | None = typer.Option(None, "--call", help="Only this tool call id."),
    type_: list[str] = typer.Option([], "--type", help="Only these event types (repeatable)."),
    since: str | None = typer.Option(None, "--since", help="From this time (RFC 3339 or epoch seconds)."),
    until: str | None = typer.Option(None, "--until", help="Before this time (RFC 3339 or epoch seconds)."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many events."),
    store: Path | None = typer.Option(None, "--store", help="Store file (default $CORRAL_HOME/events.db)."),
    export: str | None = typer.Option(None, "--export", help="Write to --out as jsonl|parquet|ocsf."),
    out: Path | None = typer.Option(None, "--out", help="Output file for --export."),
) -> None:
    """Read the event store: filter by run, episode, sandbox, call, type and time."""
    try:
        if export is not None and export not in EXPORT_FORMATS:
            raise InputError(f"unknown export format {export!r}: expected one of {', '.join(EXPORT_FORMATS)}")
        if export is not None and out is None:
            raise InputError("--export needs --out FILE")
        if out is not None and export is None:
            raise InputError("--out needs --export FORMAT")
        since_ns = parse_time_ns(since) if since is not None else None
        until_ns = parse_time_ns(until) if until is not None else None
        path = store if store is not None else default_store_path()
        if not path.exists():
            raise InputError(f"no event store at {path}")
        es = EventStore(path)
        try:
            found = es.query(
                run_id=run,
                episode_id=episode,
                sandbox_id=sandbox,
                tool_call_id=call,
                type=type_ or None,
                since_ns=since_ns,
                until_ns=until_ns,
                limit=limit,
            )
            if export is not None and out is not None:
                n = export_events(found, export, out)
                typer.echo(f"wrote {n} events to {out}", err=True)
            elif json_out:
                from corral.events import write_jsonl

                write_jsonl(found, sys.stdout)
            else:
                wide = None if sys.stdout.isatty() else 250  # piped: do not fold to 80 columns
                Console(highlight=False, width=wide).print(_table(list(found)))
        finally:
            es.close()
    except CorralError as exc:
        fail(exc)

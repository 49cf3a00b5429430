"""``corral events``: read the event store as a table, JSON lines or an export file; follow it live.

A read never writes: the store is opened read-only (``StoreReader``) after checking that the
file is an event store, so a wrong ``--store`` is an error that creates and changes nothing.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from corral.cli._app import app, fail
from corral.errors import CorralError, InputError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from corral.events import Event, StoreReader

# corral.events loads inside the command (--help must not pay for its models), so the help text
# spells out corral.events.EXPORT_FORMATS; tests/cli/test_cli_imports.py keeps them equal.
EXPORT_FORMATS = ("jsonl", "parquet", "ocsf")

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
_COLUMNS = ("seq", "time", "type", "sandbox", "run", "episode", "step", "turn", "call", "summary")
# Widths that keep the columns of a followed table aligned from one batch to the next.
_FOLLOW_WIDTHS = {"seq": 7, "time": 30, "type": 18, "sandbox": 15, "run": 10, "episode": 10, "step": 5}
_FOLLOW_WIDTHS |= {"turn": 4, "call": 15}
_FOLLOW_START = 10  # like tail -f: the newest 10, unless --tail says otherwise
_POLL_S = 0.25

# Control characters (an agent's command may hold terminal escapes) and bidirectional overrides
# (which can make text read backwards) and Unicode line separators are shown as escapes.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _one_line(value: object) -> str:
    """Text for one table cell: line breaks folded to ' ⏎ ', unsafe characters escaped."""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n").replace("\n", " ⏎ ").replace("\t", "\\t")
    return _UNSAFE.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", text
    )


def _summary(flat: dict[str, Any]) -> str:
    return " ".join(f"{k}={flat[k]}" for k in _SUMMARY_KEYS if flat.get(k) not in (None, "", [], {}))


def _cells(e: Event) -> list[Text]:
    from rich.text import Text

    flat = e.flat()
    c = e.ctx
    values = (
        e.seq,
        flat["time"],
        e.type,
        e.sandbox_id,
        c.run_id,
        c.episode_id,
        c.step,
        c.turn,
        c.tool_call_id,
        _summary(flat),
    )
    return [Text(_one_line("" if v is None else v)) for v in values]  # Text: never read as markup


def _table(events: list[Event], *, header: bool = True, fixed: bool = False) -> Table:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, show_header=header)
    for col in _COLUMNS:
        width = _FOLLOW_WIDTHS.get(col) if fixed else None
        table.add_column(col, overflow="fold", width=width, ratio=1 if fixed and col == "summary" else None)
    for e in events:
        table.add_row(*_cells(e))
    return table


def _console() -> Console:
    from rich.console import Console

    wide = None if sys.stdout.isatty() else 250  # piped: do not fold to 80 columns
    return Console(highlight=False, width=wide, markup=False)


def _note(message: str) -> None:
    typer.echo(message, err=True)


def _nothing_found(reader: StoreReader) -> None:
    total = reader.count()
    if total == 0:
        _note(f"no matching events: {reader.path} holds no events yet")
    else:
        _note(f"no matching events ({reader.path} holds {total} events; check the filters)")


def _check_options(
    export: str | None, out: Path | None, limit: int | None, tail: int | None, follow: bool, store: Path
) -> None:
    if export is not None and export not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {export!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if export is not None and out is None:
        raise InputError("--export needs --out FILE")
    if out is not None and export is None:
        raise InputError("--out needs --export FORMAT")
    if limit is not None and tail is not None:
        raise InputError("--limit (the oldest N) and --tail (the newest N) cannot be used together")
    for name, n in (("--limit", limit), ("--tail", tail)):
        if n is not None and n < 0:
            raise InputError(f"{name} must be 0 or more, not {n}")
    if follow and (export is not None or limit is not None):
        raise InputError("--follow prints events as they arrive: it cannot be used with --export or --limit")
    if out is not None:
        target = os.path.realpath(out)
        if target in {os.path.realpath(f"{store}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")}:
            raise InputError(f"--out {out} is the event store itself: choose another file")


def _print(events: list[Event], json_out: bool, console: Console, *, header: bool, fixed: bool) -> None:
    from corral.events import write_jsonl

    if json_out:
        write_jsonl(events, sys.stdout)
    else:
        console.print(_table(events, header=header, fixed=fixed))
    sys.stdout.flush()


def _follow(reader: StoreReader, filters: dict[str, Any], tail: int, json_out: bool) -> NoReturn:
    console = _console()
    top = reader.last_seq()
    first = list(reader.query(upto_seq=top, tail=tail, **filters))
    header = True
    if first:
        _print(first, json_out, console, header=True, fixed=True)
        header = False
    else:
        _note("no matching events yet; waiting for new ones (Ctrl-C to stop)")
    for batch in reader.follow(after_seq=top, poll_s=_POLL_S, **filters):
        if batch:
            _print(batch, json_out, console, header=header, fixed=True)
            header = False
    raise AssertionError("follow() only ends by an interrupt")  # pragma: no cover


def _quiet_exit_on_closed_pipe() -> NoReturn:
    # The reader went away (corral events | head): stop without a traceback, and keep Python
    # from failing again when it flushes stdout at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


@app.command("events")
def events(
    json_out: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object per line (the event's envelope and its own fields).",
    ),
    run: str | None = typer.Option(None, "--run", metavar="ID", help="Only events of this run id."),
    episode: str | None = typer.Option(
        None, "--episode", metavar="ID", help="Only events of this episode id."
    ),
    sandbox: str | None = typer.Option(
        None, "--sandbox", metavar="ID", help="Only events of this sandbox id."
    ),
    call: str | None = typer.Option(None, "--call", metavar="ID", help="Only events of this tool call id."),
    type_: list[str] = typer.Option(
        [],
        "--type",
        metavar="TYPE",
        help="Only events of this type (repeat for several): tool_call, alert, ...",
    ),
    since: str | None = typer.Option(
        None, "--since", metavar="TIME", help="Only events at or after TIME (RFC 3339 or epoch seconds)."
    ),
    until: str | None = typer.Option(
        None, "--until", metavar="TIME", help="Only events before TIME (RFC 3339 or epoch seconds)."
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        metavar="N",
        help="At most N events, the OLDEST matching ones (see --tail for the newest).",
    ),
    tail: int | None = typer.Option(
        None, "--tail", metavar="N", help="Only the NEWEST N matching events, printed oldest first."
    ),
    follow: bool = typer.Option(
        False,
        "--follow",
        "-f",
        help=f"Keep printing new events as they are recorded, until Ctrl-C; starts with the newest "
        f"{_FOLLOW_START} (or --tail N).",
    ),
    store: Path | None = typer.Option(
        None,
        "--store",
        metavar="PATH",
        help="Event store to read (default $CORRAL_HOME/events.db); never created.",
    ),
    export: str | None = typer.Option(
        None, "--export", metavar="FORMAT", help=f"Write the events to --out as {'|'.join(EXPORT_FORMATS)}."
    ),
    out: Path | None = typer.Option(None, "--out", metavar="FILE", help="Output file for --export."),
) -> None:
    """Read the event store: filter by run, episode, sandbox, call, type and time; or follow it live."""
    from corral.events import StoreReader, default_store_path, export_events, parse_time_ns, write_jsonl

    try:
        path = store if store is not None else default_store_path()
        _check_options(export, out, limit, tail, follow, path)
        filters: dict[str, Any] = {
            "run_id": run,
            "episode_id": episode,
            "sandbox_id": sandbox,
            "tool_call_id": call,
            "type": type_ or None,
            "since_ns": parse_time_ns(since) if since is not None else None,
            "until_ns": parse_time_ns(until) if until is not None else None,
        }
        with StoreReader(path) as reader:
            if follow:
                _follow(reader, filters, _FOLLOW_START if tail is None else tail, json_out)
            found = reader.query(limit=limit, tail=tail, **filters)
            if export is not None and out is not None:
                n = export_events(found, export, out)
                _note(f"wrote {n} events to {out}")
                if n == 0:
                    _nothing_found(reader)
            elif json_out:
                if write_jsonl(found, sys.stdout) == 0:
                    _nothing_found(reader)
            else:
                rows = list(found)
                if rows:
                    _console().print(_table(rows))
                else:
                    _nothing_found(reader)
    except CorralError as exc:
        fail(exc)
    except BrokenPipeError:
        _quiet_exit_on_closed_pipe()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C ends --follow: the usual status for SIGINT, and no traceback

"""``corral correlate``: attribute infrastructure log records to the tool calls that caused them."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from corral.cli._app import app, fail, missing_extra
from corral.errors import CorralError, InputError

if TYPE_CHECKING:
    from corral.correlate import CorrelationReport, LogReader

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds from ``2s``, ``500ms``, ``1.5m``, ``1h`` or a bare number of seconds."""
    m = _DURATION.match(text)
    if not m:
        raise InputError(f"not a duration: {text!r} (examples: 2s, 500ms, 1m)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise InputError(f"{what}: expected FIELD=NAME, got {part!r}")
            out[key.strip()] = value.strip()
    return out


@app.command("correlate")
def correlate_cmd(
    trace: list[Path] = typer.Option(
        [], "--trace", help="Trace: event store, trace JSONL, ROLL dump or OTLP JSON (required)."
    ),
    log: list[Path] = typer.Option(
        [], "--log", help="Infrastructure log (format detected from content; .gz ok; required)."
    ),
    skew: str = typer.Option(
        "2s", "--skew", help="Largest clock difference between logs and trace (2s, 500ms)."
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write attributions and incidents as JSON ('-': stdout)."
    ),
    html_out: Path | None = typer.Option(None, "--html", help="Write the self-contained HTML report."),
    stix_out: Path | None = typer.Option(None, "--stix", help="Write the incidents as a STIX 2.1 bundle."),
    redact: bool = typer.Option(
        False, "--redact", help="Pseudonymise internal addresses, names, accounts, secrets."
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="Read every --log as this format instead of detecting."
    ),
    aws_fields: str | None = typer.Option(
        None, "--aws-fields", help="AWS custom field order (no header line)."
    ),
    mapping: list[str] = typer.Option(
        [], "--map", help="Generic format column mapping FIELD=COLUMN (repeatable)."
    ),
    otel_map: list[str] = typer.Option(
        [], "--otel-map", help="OTLP span attribute mapping FIELD=ATTR (repeatable)."
    ),
    include_allowed: bool = typer.Option(
        False, "--include-allowed", help="Also build incidents from allowed flows."
    ),
    list_formats: bool = typer.Option(False, "--list-formats", help="List the log formats and exit."),
) -> None:
    """Attribute infrastructure log records to the RL runs, episodes and tool calls that caused them."""
    try:  # pyarrow and duckdb: the correlate extra
        from corral.correlate import correlate, log_formats, make_reader
        from corral.report import print_correlation_summary, redact_report, redactor_for
    except ModuleNotFoundError as exc:
        missing_extra("correlate", "correlate", exc)
    if list_formats:
        for name, cls in sorted(log_formats().items()):
            typer.echo(f"{name:24} {cls.title}")
        return
    if not trace or not log:
        fail("give the run's calls with --trace (event store or trace file) and the logs with --log")
    try:
        skew_s = parse_duration(skew)
        readers: dict[str, LogReader] = {}
        if fmt or aws_fields or mapping:
            opts: dict[str, object] = {}
            name = fmt or ("aws-vpc-flow" if aws_fields else "generic")
            if aws_fields:
                opts["fields"] = aws_fields.replace(",", " ").split()
            if mapping:
                opts["mapping"] = _pairs(mapping, "--map")
            readers = {str(p): make_reader(name, **opts) for p in log}
        result = correlate(
            trace,
            log,
            skew_s,
            formats=readers,
            otel_mapping=_pairs(otel_map, "--otel-map") or None,
            include_allowed=include_allowed,
        )
        report = result.report()
        if redact:
            report = redact_report(report, redactor_for(report))
        _write_outputs(report, json_out, html_out, stix_out)
    except CorralError as exc:
        fail(exc)
    except OSError as exc:
        fail(f"cannot write report: {exc}")
    from rich.console import Console

    console = Console(stderr=json_out == Path("-"), highlight=False, width=max(120, Console().width))
    print_correlation_summary(report, console)


def _write_outputs(
    report: CorrelationReport, json_out: Path | None, html_out: Path | None, stix_out: Path | None
) -> None:
    if json_out is not None:
        text = json.dumps(report.to_jsonable(), indent=1)
        if str(json_out) == "-":
            sys.stdout.write(text + "\n")
        else:
            json_out.write_text(text + "\n", encoding="utf-8")
    from corral.report import render_correlation_html, write_stix

    if html_out is not None:
        html_out.write_text(render_correlation_html(report), encoding="utf-8")
    if stix_out is not None:
        write_stix(report, stix_out)

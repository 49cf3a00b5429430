"""``corral scan``: inspect tool calls without running them (JSON lines in, one verdict line out each)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import typer

from corral.cli._app import app, fail
from corral.detect import Detector
from corral.errors import CorralError
from corral.events import TraceContext
from corral.policy import Policy


def _error(rid: Any, n: int, message: str) -> dict[str, Any]:
    # Fail closed: a line Corral could not read is never reported as allowed.
    return {"id": rid, "verdict": "block", "severity": None, "rules": [], "line": n, "error": message}


def scan_lines(detector: Detector, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """One result per non-blank input line, in order; a malformed line gives an error record."""
    ctx = TraceContext()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield _error(None, n, f"not valid JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(item, dict):
            yield _error(None, n, "each line must be a JSON object")
            continue
        rid = item.get("id")
        command = item.get("command")
        if not isinstance(command, str):
            yield _error(rid, n, "missing or non-string 'command'")
            continue
        language = item.get("language", "shell")
        result = detector.inspect_command(
            command, ctx=ctx, sandbox_id=None, language=language if isinstance(language, str) else "shell"
        )
        yield {
            "id": rid,
            "verdict": result.verdict,
            "severity": result.level.value if result.level else None,
            "rules": result.rules,
        }


def _open(file: str) -> TextIO:
    if file == "-":
        return sys.stdin
    try:
        return Path(file).open(encoding="utf-8", errors="replace")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")


@app.command("scan")
def scan(
    file: str = typer.Argument(..., help="JSON lines with 'command' and optional 'id' (or - for stdin)."),
    policy: Path | None = typer.Option(None, "--policy", "-p", help="Policy YAML (default: embedded)."),
) -> None:
    """Inspect tool calls without running them; prints one JSON verdict line per input line."""
    try:
        pol = Policy.load(policy) if policy is not None else Policy.default()
        detector = Detector.from_policy(pol)
    except CorralError as exc:
        fail(exc)
    for problem in detector.load_report.problems:
        typer.echo(f"corral: rule not loaded: {problem}", err=True)
    out = sys.stdout
    with _open(file) as fh:
        for record in scan_lines(detector, fh):
            out.write(json.dumps(record) + "\n")
    out.flush()

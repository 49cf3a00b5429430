"""``corral scan``: inspect tool calls without running them (JSON lines or plain text; a verdict each)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import typer

from corral.cli._app import app, fail
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.detect import Detector

MAX_LINE_BYTES = 4 * 1024 * 1024
_SNIFF = 8192
_TOO_LONG = "\x00too-long"  # marker from the reader: never a real line (NUL cannot be in one)


def _error(rid: Any, n: int, message: str) -> dict[str, Any]:
    # Fail closed: a line Corral could not read is never reported as allowed.
    return {"id": rid, "verdict": "block", "severity": None, "rules": [], "line": n, "error": message}


def _parse(line: str, n: int) -> tuple[Any, str, str] | dict[str, Any]:
    """(id, command, language) from one JSON line, or an error record."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return _error(None, n, f"not valid JSON: {exc.msg} (column {exc.colno})")
    except (ValueError, RecursionError) as exc:  # integers over 4,300 digits, nesting past the stack
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        return _error(None, n, f"not readable JSON: {reason}")
    if not isinstance(item, dict):
        return _error(None, n, "each line must be a JSON object")
    rid = item.get("id")
    if (rid is not None and not isinstance(rid, str | int)) or isinstance(rid, bool):
        return _error(None, n, "'id' must be a string or an integer")
    if isinstance(rid, str) and len(rid) > 1024:
        return _error(None, n, "'id' is longer than 1024 characters")
    command = item.get("command")
    if not isinstance(command, str):
        return _error(rid, n, "missing or non-string 'command'")
    language = item.get("language", "shell")
    return rid, command, language if isinstance(language, str) else "shell"


def scan_lines(detector: Detector, lines: Iterable[str], fmt: str = "jsonl") -> Iterator[dict[str, Any]]:
    """One result per non-blank input line, in order; a line that cannot be read gives an error record.

    ``fmt``: ``jsonl`` (objects with ``command``, optional ``id`` and ``language``) or ``text``
    (each line is a command; its id is its line number).
    """
    from corral.events import TraceContext

    ctx = TraceContext()
    infos = {r.id: r for r in detector.rules}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line == _TOO_LONG:
            yield _error(None, n, f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        if "\ufffd" in line and fmt == "text":
            yield _error(n, n, "not valid UTF-8")
            continue
        if fmt == "text":
            rid, command, language = n, line.rstrip("\r\n"), "shell"
        else:
            parsed = _parse(line, n)
            if isinstance(parsed, dict):
                yield parsed
                continue
            rid, command, language = parsed
        result = detector.inspect_command(command, ctx=ctx, sandbox_id=None, language=language)
        matches = []
        for a in result.alerts:
            info = infos.get(a.rule_id)
            matches.append(
                {"id": a.rule_id, "title": a.title, "category": a.category, "level": a.level.value}
                | ({"path": info.path.rsplit("/rules/", 1)[-1]} if info else {})
            )
        yield {
            "id": rid,
            "verdict": result.verdict,
            "severity": result.level.value if result.level else None,
            "rules": result.rules,
            "matches": matches,
        }


def _lines(fh: BinaryIO, first: bytes) -> Iterator[str]:
    """Decoded lines; an over-long or undecodable line becomes a marker the scanner reports."""
    pending = first
    while True:
        chunk = fh.read(1 << 16)
        pending += chunk
        while True:
            i = pending.find(b"\n")
            if i < 0 and len(pending) <= MAX_LINE_BYTES:
                break
            raw, pending = (pending[:i], pending[i + 1 :]) if i >= 0 else (pending, b"")
            if len(raw) > MAX_LINE_BYTES:
                yield _TOO_LONG
                continue
            yield raw.decode("utf-8", errors="replace")
        if not chunk:
            if pending:
                yield pending.decode("utf-8", errors="replace")
            return


def _open(file: str) -> BinaryIO:
    if file == "-":
        return sys.stdin.buffer
    try:
        return Path(file).open("rb")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")


@app.command("scan")
def scan(
    file: str = typer.Argument(
        ...,
        help="Tool calls: JSON lines with 'command' and optional 'id', or one command a line (- for stdin).",
    ),
    policy: Path | None = typer.Option(None, "--policy", "-p", help="Policy YAML (default: embedded)."),
    fmt: str = typer.Option(
        "auto",
        "--format",
        help="auto (JSON lines when the first line is JSON object or array), jsonl or text.",
    ),
) -> None:
    """Inspect tool calls without running them; prints one JSON verdict line per input line.

    Each verdict names the rules that fired with their titles and categories. A line that cannot
    be read is reported as blocked and counted on stderr; every other line still gets its verdict.
    """
    from corral.detect import Detector
    from corral.policy import Policy

    if fmt not in ("auto", "jsonl", "text"):
        fail(f"--format must be auto, jsonl or text, not {fmt!r}")
    try:
        pol = Policy.load(policy) if policy is not None else Policy.default()
        detector = Detector.from_policy(pol)
    except CorralError as exc:
        fail(exc)
    for problem in detector.load_report.problems:
        typer.echo(f"corral: rule not loaded (on_rule_error: warn): {problem}", err=True)
    fh = _open(file)
    head = fh.read(_SNIFF)
    if not head.strip():
        fail(f"{file}: empty input: nothing to scan")
    if b"\x00" in head or head.decode("utf-8", errors="replace").count("\ufffd") > len(head) // 20:
        fail(f"{file}: binary input: expected JSON lines or one command per line")
    first = next((ln for ln in head.splitlines() if ln.strip()), b"")
    mode = fmt if fmt != "auto" else ("jsonl" if first.lstrip()[:1] in (b"{", b"[") else "text")
    out = sys.stdout
    bad: list[int] = []
    total = 0
    for record in scan_lines(detector, _lines(fh, head), mode):
        total += 1
        if "error" in record:
            bad.append(record["line"])
        out.write(json.dumps(record) + "\n")
    out.flush()
    if bad:
        shown = ", ".join(str(n) for n in bad[:20]) + (" ..." if len(bad) > 20 else "")
        typer.echo(f"corral: {len(bad)} of {total} lines could not be read (blocked): line {shown}", err=True)

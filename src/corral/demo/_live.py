"""The demo's live view: a scrolling log of what happens above the progress bar, 80 columns wide.

Blocked calls, alerted calls, the acts' calls, each attribution the watcher makes,
quarantines and the halt are printed as they happen (from any thread: the episode
workers and the watcher). A command is never cut to a few characters: it is folded
to one line and wrapped under its header, which names the tool call id, so that
``corral events --call ID`` shows it whole. The ``*_lines`` functions are pure.
"""

from __future__ import annotations

import textwrap
import threading
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from corral.correlate import Attribution
from corral.demo._loop import CallRecord, EpisodeOutcome, LoopStats
from corral.report import endpoint
from corral.respond import CallVerdict

INDENT = 9
LABEL_W = 11
MAX_COMMAND_LINES = 3
LABEL_STYLE = {
    "BLOCKED": "bold red",
    "ALERT": "bold yellow",
    "RAN": "bold cyan",
    "REFUSED": "bold magenta",
    "FW": "bold blue",
    "QUARANTINE": "bold red",
    "HALT": "bold white on red",
    "NOTE": "bold",
}


def fold_command(command: str) -> str:
    """A command on one line: newlines shown as ⏎, runs of blanks kept (they may matter in quotes)."""
    return " ⏎ ".join(part for part in command.strip().splitlines())


def command_lines(command: str, width: int, max_lines: int = MAX_COMMAND_LINES) -> list[str]:
    """The folded command wrapped to ``width - INDENT`` columns, indented; ``…`` if it needs more lines."""
    room = max(20, width - INDENT)
    lines = textwrap.wrap(
        fold_command(command), room, break_long_words=True, break_on_hyphens=False, drop_whitespace=True
    )
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: room - 1] + "…"
    return [" " * INDENT + ln for ln in lines]


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns with an ellipsis."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def stamp(t: float, t0: float) -> str:
    """Seconds since the run started, right-aligned in 7 columns, then a space: ``   12.3s ``."""
    return f"{t - t0:7.1f}s "


def header(label: str, when: str, rest: str, width: int) -> Text:
    line = Text(when)
    line.append(label, style=LABEL_STYLE.get(label, "bold"))
    line.append(" " * (LABEL_W - len(label)))
    line.append(fit(rest, max(0, width - len(when) - LABEL_W)))
    return line


def call_lines(rec: CallRecord, t0: float, width: int) -> list[Text]:
    """What the log shows of a call worth showing (blocked, alerted, refused, an act), else nothing."""
    r = rec.result
    if rec.refused:
        label = "REFUSED"
    elif r.blocked:
        label = "BLOCKED"
    elif r.alerts:
        label = "ALERT"
    elif rec.act is not None:
        label = "RAN"
    else:
        return []
    who = f"{rec.episode_id} turn {rec.turn} {r.ctx.tool_call_id or ''}"
    if rec.trusted:
        who += " (grader)"
    what = ""
    if rec.refused:
        what = "run halted: not run"
    elif r.alerts:
        what = "; ".join(dict.fromkeys(a.title for a in r.alerts))
    elif rec.act is not None:
        what = f"{rec.act.name} started"
    out = [header(label, stamp(rec.start_s, t0), f"{who}  {what}".rstrip(), width)]
    if not rec.refused:
        out += [Text(ln, style="dim") for ln in command_lines(rec.command, width)]
    return out


def attribution_lines(a: Attribution, latency_s: float, now: float, t0: float, width: int) -> list[Text]:
    """One firewall record, what it says and the call it was attributed to, on one line."""
    dest = endpoint(a.dst_ip, a.dst_port)
    if a.tool_call_id:
        who = f"{a.episode_id} turn {a.turn}"
    elif a.episode_id:
        who = f"{a.episode_id} ({a.candidate_count} calls)"
    else:
        who = f"{a.candidate_count} candidate calls"
    room = width - len(stamp(now, t0)) - LABEL_W
    text = f"line {a.log_line} {dest} {a.action or ''} -> {who}"
    for extra in (
        f" ({a.method} {a.confidence:.2f}, {latency_s:.1f}s)",
        f" ({a.confidence:.2f}, {latency_s:.1f}s)",
    ):
        if len(text + extra) <= room:
            text += extra
            break
    return [header("FW", stamp(now, t0), text, width)]


class LiveView:
    """The progress bar and, above it, the log; every method is safe from any thread."""

    def __init__(self, console: Console, total: int, t0: float) -> None:
        self.console = console
        self.t0 = t0
        self.width = min(console.width, 120)
        self._lock = threading.Lock()
        self._fw = [0, 0]  # violations attributed, records read
        self._halted = False
        self.progress = Progress(
            TextColumn("[bold]episodes"),
            BarColumn(bar_width=max(8, min(24, self.width - 64))),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID = self.progress.add_task("episodes", total=total, stats="")
        self._stats = LoopStats()

    def __enter__(self) -> LiveView:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._refresh()
        self.progress.stop()

    def _print(self, lines: list[Text]) -> None:
        for ln in lines:
            self.progress.console.print(ln, no_wrap=True, overflow="ellipsis", crop=True)

    def _refresh(self, advance: int = 0) -> None:
        st = self._stats
        with self._lock:
            att, _ = self._fw
            halted = self._halted
        alerts = sum(st.alerts_by_category.values())
        stats = f"calls {st.calls} [red]blocked {st.blocked}[/] [yellow]alerts {alerts}[/] [blue]fw {att}[/]"
        if halted:
            stats += " [bold red]HALTED[/]"
        self.progress.update(self._task, advance=advance, stats=stats)

    def call(self, rec: CallRecord, verdict: CallVerdict) -> None:
        self._print(call_lines(rec, self.t0, self.width))

    def episode(self, ep: EpisodeOutcome, stats: LoopStats) -> None:
        self._stats = stats
        self._refresh(advance=1)

    def attribution(self, a: Attribution, latency_s: float) -> None:
        with self._lock:
            self._fw[0] += 1
        self._print(attribution_lines(a, latency_s, time.time(), self.t0, self.width))
        self._refresh()

    def quarantine(self, episode_id: str, count: int, window_s: float) -> None:
        text = f"{episode_id}: {count} attributed records in {window_s:g}s; ends at next call"
        self._print([header("QUARANTINE", stamp(time.time(), self.t0), text, self.width)])

    def halt(self, count: int, window_s: float, obeyed: bool) -> None:
        with self._lock:
            self._halted = True
        then = ": the run stops" if obeyed else " (--no-halt)"
        text = f"{count} violations in {window_s:g}s tripped the breaker{then}"
        self._print([header("HALT", stamp(time.time(), self.t0), text, self.width)])
        self._refresh()

    def note(self, text: str) -> None:
        self._print([header("NOTE", stamp(time.time(), self.t0), text, self.width)])

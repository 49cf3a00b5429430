"""``corral demo``: the main job, a misbehaving RL run through Corral, end to end."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from corral.cli._app import app, fail, missing_extra
from corral.errors import CorralError

_HELP = (
    "Run a small RL loop whose agent opens a reverse SSH tunnel, starts a miner and misbehaves at random."
    "\n\nCorral blocks what it can before it runs and refuses every connection; a simulated node firewall "
    "logs the attempts, a watcher attributes each record to its tool call as it is written, the guilty "
    "episodes are quarantined and a burst trips the circuit breaker that halts the run. Needs root."
)


@app.command("demo", help=_HELP)
def demo(
    episodes: int = typer.Option(64, "--episodes", min=1, help="Episodes to run."),
    workers: int = typer.Option(4, "--workers", min=1, help="Episodes running at once."),
    seed: int = typer.Option(7, "--seed", help="Seed of the scripted agent's choices (same seed, same run)."),
    misbehave_rate: float = typer.Option(
        0.25,
        "--misbehave-rate",
        min=0.0,
        max=1.0,
        help="Share of the other episodes that misbehave at random.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: $CORRAL_HOME/demo/<run>)."),
    no_halt: bool = typer.Option(
        False, "--no-halt", help="Keep running after the circuit breaker trips, to show what it prevented."
    ),
) -> None:
    """The main job: a misbehaving RL run through Corral, end to end (see _HELP)."""
    if os.geteuid() != 0:
        fail("corral demo needs root: it creates network namespaces, an SSH server and sandboxes")
    try:  # the demo correlates and reports: the correlate extra
        from corral.demo import DemoConfig, print_summary, run_demo
    except ModuleNotFoundError as exc:
        missing_extra("correlate", "demo", exc)
    from rich.console import Console

    console = Console()
    try:
        d = run_demo(DemoConfig(episodes, workers, seed, misbehave_rate, out=out, halt=not no_halt), console)
    except CorralError as exc:
        fail(exc)
    except KeyboardInterrupt:
        fail("interrupted: no episode or call was started after Ctrl-C; the sandboxes are closed", code=130)
    print_summary(d, console)

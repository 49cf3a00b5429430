"""``corral demo``: the main job, a misbehaving RL run through Corral, end to end."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from corral.cli._app import app, fail, missing_extra
from corral.errors import CorralError


@app.command("demo")
def demo(
    episodes: int = typer.Option(64, "--episodes", min=1, help="Episodes to run."),
    workers: int = typer.Option(4, "--workers", min=1, help="Episodes running at once."),
    seed: int = typer.Option(7, "--seed"),
    misbehave_rate: float = typer.Option(0.25, "--misbehave-rate", min=0.0, max=1.0),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: $CORRAL_HOME/demo/<run>)."),
) -> None:
    """Run a small RL loop whose agent misbehaves in some episodes, then correlate and report."""
    try:  # the demo correlates and reports: the correlate extra
        from corral.demo import DemoConfig, print_summary, run_demo
    except ModuleNotFoundError as exc:
        missing_extra("correlate", "demo", exc)
    console = Console()
    try:
        d = run_demo(DemoConfig(episodes, workers, seed, misbehave_rate, out=out), console)
    except CorralError as exc:
        fail(exc)
    print_summary(d, console)

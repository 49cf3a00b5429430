"""``corral redteam``: run the attack scenarios against a policy and print a scorecard."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from corral.cli._app import app, fail
from corral.cli._common import load_policy
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.redteam import ScenarioResult


@app.command("redteam")
def redteam(
    policy: Path | None = typer.Option(
        None, "--policy", "-p", help="Policy YAML (default: the embedded one)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the scorecard as JSON to this file."),
    html_out: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report here."),
    list_: bool = typer.Option(False, "--list", help="List the scenarios and exit."),
    only: list[str] = typer.Option([], "--only", help="Run only this scenario or category (repeatable)."),
    scenarios_dir: list[Path] = typer.Option(
        [], "--scenarios", help="Also load scenario YAML files from this directory (repeatable)."
    ),
    store: Path | None = typer.Option(None, "--store", help="Event store for the run's events."),
) -> None:
    """Run attack scenarios in sandboxes against fake targets; exit 1 if any was not blocked."""
    from corral.redteam import load_scenarios, run_redteam, select
    from corral.redteam._html import print_scorecard, render_html

    pol = load_policy(policy)
    try:
        scenarios = select(load_scenarios(scenarios_dir), only)
    except CorralError as exc:
        fail(exc)
    from rich.console import Console

    console = Console()
    if list_:
        for s in scenarios:
            console.print(f"[bold]{s.name}[/] [dim]({s.category})[/] {s.description}", highlight=False)
        return
    if os.geteuid() != 0:
        fail("corral redteam needs root: it creates network namespaces, an SSH server and sandboxes")

    def progress(r: ScenarioResult) -> None:
        mark = "[green]blocked[/]" if r.blocked else "[bold red]NOT BLOCKED[/]"
        console.print(f"  {mark} {r.name} [dim]{r.duration_s:.2f}s[/]", highlight=False)

    console.print(f"Running {len(scenarios)} scenario(s) against policy {pol.name!r}...", highlight=False)
    try:
        card = run_redteam(pol, scenarios, store_path=store, on_result=progress)
    except CorralError as exc:
        fail(exc)
    print_scorecard(card, console)
    if json_out is not None:
        json_out.write_text(json.dumps(card.to_json_dict(), indent=2) + "\n")
        console.print(f"JSON scorecard: {json_out}", highlight=False)
    if html_out is not None:
        html_out.write_text(render_html(card))
        console.print(f"HTML report: {html_out}", highlight=False)
    sys.exit(0 if card.all_blocked else 1)

"""``corral rules list|show``: the loaded rule set, readable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from corral.cli._app import app, fail
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.detect import Detector, RuleInfo

rules_app = typer.Typer(help="List and explain the detection rules a policy loads.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


def _detector(policy: Path | None) -> Detector:
    from corral.detect import Detector
    from corral.policy import Policy

    try:
        return Detector.from_policy(Policy.load(policy) if policy is not None else Policy.default())
    except CorralError as exc:
        fail(exc)


def _short(path: str) -> str:
    return path.rsplit("/rules/", 1)[-1]


@rules_app.command("list")
def list_rules(
    category: str | None = typer.Option(None, "--category", "-c", help="Only rules of this category."),
    policy: Path | None = typer.Option(None, "--policy", "-p", help="Policy YAML (default: embedded)."),
) -> None:
    """Every rule the policy loads: id, level, category and title."""
    det = _detector(policy)
    rules = sorted(det.rules, key=lambda r: (r.category, -r.level.rank, r.title))
    if category is not None:
        rules = [r for r in rules if r.category == category]
        if not rules:
            known = ", ".join(sorted({r.category for r in det.rules}))
            fail(f"no rules in category {category!r}; categories: {known}")
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, pad_edge=False)
    for col in ("id", "level", "category", "title"):
        table.add_column(col, overflow="fold")
    for r in rules:
        table.add_row(
            r.id, r.level.value, r.category, r.title + ("" if r.generate else " (feeds a correlation)")
        )
    Console(soft_wrap=False).print(table)
    typer.echo(f"{len(rules)} rules")


def _find(det: Detector, rule_id: str) -> RuleInfo:
    try:
        return det.rule(rule_id)
    except KeyError:
        hits = [r for r in det.rules if r.id.startswith(rule_id) or r.title.lower() == rule_id.lower()]
        if len(hits) == 1:
            return hits[0]
        fail(f"no rule {rule_id!r}" + (f" (prefix matches {len(hits)} rules)" if hits else ""))


@rules_app.command("show")
def show(
    rule_id: str = typer.Argument(..., help="Rule id (or a unique prefix of it, or its exact title)."),
    policy: Path | None = typer.Option(None, "--policy", "-p", help="Policy YAML (default: embedded)."),
) -> None:
    """One rule: title, description, level, tags, false positives and its examples."""
    r = _find(_detector(policy), rule_id)
    lines = [
        f"{r.title}",
        f"  id:          {r.id}",
        f"  level:       {r.level.value}",
        f"  category:    {r.category}",
        f"  status:      {r.status or '-'}",
        f"  log source:  {r.logsource}",
        f"  file:        {_short(r.path)}",
        f"  tags:        {', '.join(r.tags) or '-'}",
        "",
        f"  {r.description}",
        "",
        "  false positives:",
        *(f"    - {fp}" for fp in r.falsepositives),
    ]
    for key in ("match", "nomatch"):
        examples = r.tests.get(key) or []
        if examples:
            lines += ["", f"  examples it {'matches' if key == 'match' else 'does not match'}:"]
            lines += [f"    - {ex}" for ex in examples]
    typer.echo("\n".join(lines))

"""``corral policy schema|check``."""

from __future__ import annotations

from pathlib import Path

import typer

from corral.cli._app import app, fail
from corral.errors import PolicyError, RuleError

policy_app = typer.Typer(help="Inspect and validate policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command("schema")
def schema() -> None:
    """Print the policy's JSON Schema."""
    from corral.policy import policy_json_schema

    typer.echo(policy_json_schema())


@policy_app.command("check")
def check(file: Path = typer.Argument(..., help="Policy YAML file to validate.")) -> None:
    """Validate a policy file and compile its detection rules; every error names its file and line."""
    from corral.detect import Detector
    from corral.policy import Policy, policy_warnings

    try:
        p = Policy.load(file)
        Detector.from_policy(p)  # rule and override problems stop the policy here, not at first use
    except (PolicyError, RuleError) as exc:
        fail(exc)
    for warning in policy_warnings(p):
        typer.echo(f"{file}: warning: {warning}", err=True)
    typer.echo(f"{file}: ok (policy {p.name!r})")

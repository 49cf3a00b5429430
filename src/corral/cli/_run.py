"""``corral run``: one command in a fresh sandbox, exiting with its exit code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from corral.cli._app import app, fail
from corral.cli._common import load_policy
from corral.errors import CorralError
from corral.events import EventStore, TraceContext, default_store_path
from corral.harness import Sandbox

# Exit code when policy stopped the call before it ran (as a shell reports "cannot execute").
EXIT_BLOCKED = 126


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run(
    command: list[str] = typer.Argument(..., help="The command and its arguments (after --)."),
    policy: Path | None = typer.Option(None, "--policy", "-p", help="Policy YAML (default: embedded)."),
    as_json: bool = typer.Option(False, "--json", help="Print the ToolResult as one JSON object."),
    store: Path | None = typer.Option(
        None, "--store", help="Event store file (default: policy or $CORRAL_HOME)."
    ),
    timeout: float | None = typer.Option(None, "--timeout", help="Wall-clock limit in seconds."),
    image: str | None = typer.Option(
        None,
        "--image",
        help="Run inside this image: dir:PATH, oci:PATH[:TAG], docker-archive:PATH or docker://REF "
        "(must be in the policy's environment.images_allowed; default: the policy's environment.image).",
    ),
    workspace: Path | None = typer.Option(
        None,
        "--workspace",
        help="A host directory the workspace starts as (copy-on-write: the directory itself never changes).",
    ),
    run_id: str | None = typer.Option(None, "--run-id"),
    episode_id: str | None = typer.Option(None, "--episode-id"),
    step: int | None = typer.Option(None, "--step"),
    turn: int | None = typer.Option(None, "--turn"),
) -> None:
    """Run one command in a fresh sandbox and exit with its code (126 if policy blocked it).

    Examples:

      corral run -- pytest -q

      corral run --json -- sh -c 'curl -s https://example.com | head'

      corral run --image docker://registry.local/swe/task-1:latest --workspace ./repo -- make test
    """
    pol = load_policy(policy)
    ctx = TraceContext(run_id=run_id, episode_id=episode_id, step=step, turn=turn)
    # One word runs under the shell (so `corral run -- "a | b"` works); several run as argv.
    cmd: str | list[str] = command if len(command) > 1 else command[0]
    try:
        with (
            EventStore(store or default_store_path(pol)) as st,
            Sandbox(pol, store=st, image=image, workspace=workspace) as sb,
        ):
            result = sb.run(cmd, ctx, timeout=timeout)
    except CorralError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(result.to_json_dict()))
    else:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if result.blocked:
            typer.echo(f"corral: blocked by policy: {result.block_reason}", err=True)
        elif result.stop_reason:
            typer.echo(f"corral: call stopped: {result.stop_reason}", err=True)
    if result.blocked:
        raise typer.Exit(EXIT_BLOCKED)
    raise typer.Exit(result.exit_code if result.exit_code is not None else 1)

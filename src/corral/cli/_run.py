"""``corral run``: one command in a fresh sandbox, exiting with its exit code."""

from __future__ import annotations

from pathlib import Path

import typer

from corral.cli._app import app, fail
from corral.cli._common import load_policy
from corral.errors import CorralError


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
    run_id: str | None = typer.Option(
        None, "--run-id", metavar="ID", help="RL run id recorded with the call's events."
    ),
    episode_id: str | None = typer.Option(
        None, "--episode-id", metavar="ID", help="Episode id recorded with the call's events."
    ),
    step: int | None = typer.Option(
        None, "--step", metavar="N", help="Training step recorded with the call."
    ),
    turn: int | None = typer.Option(None, "--turn", metavar="N", help="Agent turn recorded with the call."),
    local: bool = typer.Option(
        False, "--local", help="Build the sandbox in this process even when a node agent is running."
    ),
) -> None:
    """Run one command in a fresh sandbox and exit with its code (126 if policy blocked it).

    With a node agent running (`corral serve`; its socket is $CORRAL_SOCKET or /run/corral/corral.sock)
    and none of --policy, --store, --image, --workspace or --local given, the call runs in one of the
    agent's sandboxes, under the node's default policy and recorded in its event store.

    Examples:

      corral run -- pytest -q

      corral run --json -- sh -c 'curl -s https://example.com | head'

      corral run --image docker://registry.local/swe/task-1:latest --workspace ./repo -- make test
    """
    from corral.cli._agent import LOCAL_HINT, AgentError, AgentUnreachable, report, run_via_agent

    # One word runs under the shell (so `corral run -- "a | b"` works); several run as argv.
    cmd: str | list[str] = command if len(command) > 1 else command[0]
    if not local and policy is None and store is None and image is None and workspace is None:
        ctx_fields = {"run_id": run_id, "episode_id": episode_id, "step": step, "turn": turn}
        try:
            done = run_via_agent(cmd, {k: v for k, v in ctx_fields.items() if v is not None}, timeout)
        except AgentUnreachable:
            pass
        except AgentError as exc:
            fail(f"{exc}\n  {LOCAL_HINT}")
        else:
            raise typer.Exit(report(done, as_json))
    from corral.events import EventStore, TraceContext, default_store_path
    from corral.harness import Sandbox

    pol = load_policy(policy)
    ctx = TraceContext(run_id=run_id, episode_id=episode_id, step=step, turn=turn)
    try:
        with (
            EventStore(store or default_store_path(pol)) as st,
            Sandbox(pol, store=st, image=image, workspace=workspace) as sb,
        ):
            result = sb.run(cmd, ctx, timeout=timeout)
    except CorralError as exc:
        fail(exc)
    raise typer.Exit(report(result.to_json_dict(), as_json))

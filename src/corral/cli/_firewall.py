"""``corral firewall export|apply``: the policy's network section as node and cluster firewalls."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from corral.cli._app import app, fail
from corral.egress._export import FORMATS, ExportOptions, apply_script, render, render_nftables
from corral.egress._netns import DEFAULT_BASE
from corral.egress._nft import run_nft
from corral.errors import CorralError
from corral.policy import Policy

firewall_app = typer.Typer(
    help="Render or install the policy's network rules as a firewall.", no_args_is_help=True
)
app.add_typer(firewall_app, name="firewall")

_POLICY = typer.Option(None, "--policy", "-p", help="Policy YAML (default: the embedded default).")
_SOURCE = typer.Option(
    [DEFAULT_BASE], "--source", help="Sandbox source addresses on the node (repeatable; the egress base)."
)


def _load(policy: Path | None) -> Policy:
    return Policy.load(policy) if policy is not None else Policy.default()


def _options(
    source: list[str], namespace: str | None = None, selector: list[str] | None = None
) -> ExportOptions:
    pairs: list[tuple[str, str]] = []
    for item in selector or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--selector takes key=value, got {item!r}")
        pairs.append((key, value))
    opt = ExportOptions(sources=tuple(source), namespace=namespace)
    return replace(opt, selector=tuple(pairs)) if pairs else opt


@firewall_app.command("export")
def export(
    fmt: str = typer.Option(..., "--format", "-f", help=f"One of: {', '.join(FORMATS)}."),
    policy: Path | None = _POLICY,
    source: list[str] = _SOURCE,
    namespace: str | None = typer.Option(
        None, "--namespace", help="Kubernetes namespace for the policy object."
    ),
    selector: list[str] = typer.Option([], "--selector", help="Pod label key=value (repeatable)."),
) -> None:
    """Print the policy as an nftables ruleset, a Kubernetes NetworkPolicy or a CiliumNetworkPolicy."""
    try:
        typer.echo(render(_load(policy).network, fmt, _options(source, namespace, selector)), nl=False)
    except CorralError as exc:
        fail(exc)


@firewall_app.command("apply")
def apply(
    policy: Path | None = _POLICY,
    source: list[str] = _SOURCE,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the ruleset instead of installing it."),
) -> None:
    """Install the nftables form on this node, in Corral's own table (replaced atomically)."""
    try:
        net = _load(policy).network
        opt = _options(source)
        if dry_run:
            typer.echo(render_nftables(net, opt), nl=False)
            return
        run_nft(apply_script(net, opt))
        typer.echo("corral: installed table inet corral_node")
    except CorralError as exc:
        fail(exc)

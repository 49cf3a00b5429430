"""``corral firewall export|apply``: the policy's network section as node and cluster firewalls."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from corral.cli._app import app, err_console, fail
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.egress._export import ExportOptions
    from corral.policy import Policy

# corral.egress loads inside the commands (--help must not pay for pyroute2), so the help text
# spells out corral.egress._export.FORMATS and corral.egress._netns.DEFAULT_BASE;
# tests/cli/test_cli_imports.py keeps them equal.
FORMATS = ("nftables", "k8s-networkpolicy", "cilium")
DEFAULT_BASE = "10.231.0.0/16"

firewall_app = typer.Typer(
    help="Render or install the policy's network rules as a firewall.", no_args_is_help=True
)
app.add_typer(firewall_app, name="firewall")

_POLICY = typer.Option(None, "--policy", "-p", help="Policy YAML (default: the embedded default).")
_SOURCE = typer.Option(
    [DEFAULT_BASE], "--source", help="Sandbox source addresses on the node (repeatable; the egress base)."
)


def _load(policy: Path | None) -> Policy:
    from corral.policy import Policy

    return Policy.load(policy) if policy is not None else Policy.default()


def _options(
    source: list[str],
    namespace: str | None = "corral",
    selector: list[str] | None = None,
    resolve: bool = False,
    cilium_version: str = "1.19",
) -> ExportOptions:
    from corral.egress._export import ExportOptions

    pairs: list[tuple[str, str]] = []
    for item in selector or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--selector takes key=value, got {item!r}")
        pairs.append((key, value))
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", cilium_version)
    if m is None:
        fail(f"--cilium-version takes MAJOR.MINOR, got {cilium_version!r}")
    opt = ExportOptions(
        sources=tuple(source),
        namespace=namespace or None,
        resolve=resolve,
        cilium_version=(int(m.group(1)), int(m.group(2))),
    )
    if pairs:
        opt = replace(opt, selector=tuple(pairs))
    return opt


def _warn(warnings: tuple[str, ...]) -> None:
    for w in warnings:
        err_console().print(f"[bold yellow]corral: warning:[/] {w}", markup=True, highlight=False)


@firewall_app.command("export")
def export_cmd(
    fmt: str = typer.Option(..., "--format", "-f", help=f"One of: {', '.join(FORMATS)}."),
    policy: Path | None = _POLICY,
    source: list[str] = _SOURCE,
    namespace: str = typer.Option("corral", "--namespace", help="Kubernetes namespace ('' for none)."),
    selector: list[str] = typer.Option(
        [], "--selector", help="Pod label key=value (repeatable; default app.kubernetes.io/name=corral-node)."
    ),
    resolve: bool = typer.Option(
        False,
        "--resolve",
        help="NetworkPolicy only: allow the addresses the allowed names resolve to now (they go stale).",
    ),
    cilium_version: str = typer.Option(
        "1.19", "--cilium-version", help="Cilium release the policy is for ('*.x' needs 1.19+ for '**.')."
    ),
) -> None:
    """Print the policy as an nftables ruleset, a Kubernetes NetworkPolicy or a CiliumNetworkPolicy."""
    from corral.egress._export import export

    try:
        out = export(_load(policy), fmt, _options(source, namespace, selector, resolve, cilium_version))
    except CorralError as exc:
        fail(exc)
    _warn(out.warnings)
    typer.echo(out.text, nl=False)


@firewall_app.command("apply")
def apply(
    policy: Path | None = _POLICY,
    source: list[str] = _SOURCE,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the ruleset instead of installing it."),
) -> None:
    """Install the nftables form on this node, in Corral's own table (replaced atomically)."""
    from corral.egress._export import NODE_TABLE, apply_script, export
    from corral.egress._nft import run_nft

    try:
        pol = _load(policy)
        opt = _options(source)
        out = export(pol, "nftables", opt)
        _warn(out.warnings)
        if dry_run:
            typer.echo(out.text, nl=False)
            return
        run_nft(apply_script(pol, opt))
        typer.echo(f"corral: installed table inet {NODE_TABLE}")
    except CorralError as exc:
        fail(exc)

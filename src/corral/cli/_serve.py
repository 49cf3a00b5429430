"""``corral serve``: the node service, and ``corral serve-openapi`` for its spec."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from corral.cli._app import app, fail, missing_extra
from corral.cli._common import load_policy
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.policy import Policy

# corral.cli._agent.DEFAULT_SOCKET, spelled out: that client imports http.client and ssl, which
# --help need not pay for; tests/cli/test_cli_imports.py keeps them equal.
DEFAULT_SOCKET = "/run/corral/corral.sock"


def _policies(default: Path | None, named: list[str]) -> dict[str, Policy]:
    policies = {"default": load_policy(default)}
    for item in named:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            fail(f"--named-policy wants NAME=PATH, got {item!r}")
        policies[name] = load_policy(Path(path))
    return policies


@app.command("serve")
def serve_cmd(
    policy: Path | None = typer.Option(
        None, "--policy", "-p", help="The 'default' policy (default: embedded)."
    ),
    named_policy: list[str] = typer.Option(
        [], "--named-policy", help="NAME=PATH; clients pick policies by name."
    ),
    socket_path: str = typer.Option(DEFAULT_SOCKET, "--socket", help="Unix socket ('' for none)."),
    socket_mode: str = typer.Option("660", "--socket-mode", help="Octal file mode of the socket."),
    socket_group: str | None = typer.Option(
        None, "--socket-group", help="Group (name or numeric GID) that may use the socket."
    ),
    http: str | None = typer.Option(None, "--http", help="HOST:PORT for HTTP (needs --token-file)."),
    token_file: Path | None = typer.Option(None, "--token-file", help="File holding the HTTP bearer token."),
    store: Path | None = typer.Option(None, "--store", help="Event store (default: policy or $CORRAL_HOME)."),
    lease_s: float = typer.Option(
        300.0, "--lease", help="Reap a sandbox after this long without its client."
    ),
    max_sandboxes: int = typer.Option(
        4096, "--max-sandboxes", metavar="N", help="Refuse new sandboxes while this many are live."
    ),
) -> None:
    """Own this node's sandboxes and serve them to trainers (Unix socket; HTTP with a token)."""
    try:  # FastAPI and uvicorn: the service extra
        from corral.integrations.service import NodeService, ServeConfig, serve
        from corral.integrations.service._server import socket_group_id
    except ModuleNotFoundError as exc:
        missing_extra("service", "serve", exc)
    from corral.events import EventStore, default_store_path

    if socket_group is not None:
        try:
            socket_group_id(socket_group)  # a missing group stops before any sandbox or store exists
        except CorralError as exc:
            fail(exc)
    policies = _policies(policy, named_policy)
    host, port = None, 8750
    if http:
        h, _, p = http.rpartition(":")
        if not h or not p.isdigit():
            fail(f"--http wants HOST:PORT, got {http!r}")
        host, port = h.strip("[]"), int(p)
    token = token_file.read_text().strip() if token_file else None
    cfg = ServeConfig(
        socket_path=socket_path or None,
        socket_mode=int(socket_mode, 8),
        socket_group=socket_group,
        http_host=host,
        http_port=port,
        token=token,
    )
    # SIGTERM (systemd, kubelet) stops like Ctrl-C: uvicorn exits, every sandbox is destroyed.
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        st = EventStore(store or default_store_path(policies["default"]))
        node = NodeService(policies, store=st, default_lease_s=lease_s, max_sandboxes=max_sandboxes)
        try:
            serve(node, cfg)
        finally:
            st.close()
    except CorralError as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass


@app.command("serve-openapi")
def serve_openapi() -> None:
    """Print the node service's OpenAPI spec (JSON)."""
    try:
        from corral.integrations.service import NodeService, openapi_spec
    except ModuleNotFoundError as exc:
        missing_extra("service", "serve-openapi", exc)
    from corral.policy import Policy

    node = NodeService({"default": Policy.default()}, reap_interval_s=3600)
    try:
        typer.echo(json.dumps(openapi_spec(node), indent=2, sort_keys=True))
    finally:
        node.close()

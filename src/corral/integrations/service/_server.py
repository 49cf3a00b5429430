"""Running the service: a Unix socket (permissions from the file mode) and, optionally, HTTP with a token."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from corral.errors import InputError
from corral.integrations.service._app import create_app
from corral.integrations.service._node import NodeService

DEFAULT_SOCKET = "/run/corral/corral.sock"


@dataclass(frozen=True)
class ServeConfig:
    socket_path: str | None = DEFAULT_SOCKET
    socket_mode: int = 0o660  # owner and group: the group names who may use the node's sandboxes
    socket_group: str | None = None
    http_host: str | None = None  # e.g. 127.0.0.1 or the node's address; needs a token
    http_port: int = 8750
    token: str | None = None
    workers_threads: int = 256  # blocking helpers only (event followers); calls and transfers are coroutines
    log_level: str = "warning"
    keep_alive_s: float = 30.0  # idle client connections kept open (clients drop theirs sooner)


def socket_group_id(group: str) -> int:
    """A group name or numeric GID; a name this host does not know is a clear error, not a KeyError."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise InputError(
            f"--socket-group {group!r}: no such group on this host; create it (groupadd {group}) "
            "or give a numeric GID (the deploy/ image has group 'corral' with GID 2450)"
        ) from None


def unix_listener(path: str, mode: int, group: str | None) -> socket.socket:
    """Bind the socket with its final mode already in place (no window where it is world-usable)."""
    gid = socket_group_id(group) if group is not None else None  # before anything is created
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_socket():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            p.unlink()  # left by a service that died: nothing listens on it
        else:
            raise InputError(f"another service is listening on {path}")
        finally:
            probe.close()
    elif p.exists() or p.is_symlink():
        raise InputError(f"{path} exists and is not a socket; refusing to replace it")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, mode)
    if gid is not None:
        os.chown(path, -1, gid)
    sock.listen(1024)
    return sock


async def _serve(node: NodeService, cfg: ServeConfig) -> None:
    import anyio.to_thread

    anyio.to_thread.current_default_thread_limiter().total_tokens = cfg.workers_threads
    servers: list[asyncio.Task[None]] = []
    await node.start()
    if cfg.socket_path:
        sock = unix_listener(cfg.socket_path, cfg.socket_mode, cfg.socket_group)
        local = uvicorn.Server(
            uvicorn.Config(
                create_app(node),
                log_level=cfg.log_level,
                lifespan="off",
                timeout_keep_alive=int(cfg.keep_alive_s),
            )
        )
        servers.append(asyncio.create_task(local.serve(sockets=[sock])))
    if cfg.http_host:
        if not cfg.token or len(cfg.token) < 16:
            raise InputError("HTTP needs a token of at least 16 characters (--token-file)")
        http = uvicorn.Config(
            create_app(node, token=cfg.token),
            host=cfg.http_host,
            port=cfg.http_port,
            log_level=cfg.log_level,
            lifespan="off",
            timeout_keep_alive=int(cfg.keep_alive_s),
        )
        servers.append(asyncio.create_task(uvicorn.Server(http).serve()))
    if not servers:
        raise InputError("nothing to listen on: give a socket path or an HTTP host")
    try:
        await asyncio.gather(*servers)
    finally:
        try:
            await node.aclose()  # on this loop, where the sandboxes live
        finally:
            if cfg.socket_path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(cfg.socket_path)


def serve(node: NodeService, cfg: ServeConfig) -> None:
    """Serve until SIGINT/SIGTERM, then destroy every sandbox and flush the store."""
    try:
        asyncio.run(_serve(node, cfg))
    finally:
        node.close()  # a no-op once the loop closed it; closes what a failed start left

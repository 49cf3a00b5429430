"""Runs the node service in this process on a Unix socket and a loopback TCP port, for tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import uvicorn

from corral.events import EventStore
from corral.integrations.service import NodeService, create_app, unix_listener

TOKEN = "t0ken-for-tests-0123456789"


class RunningService:
    def __init__(self, node: NodeService, sock_path: Path) -> None:
        self.node = node
        self.sock_path = str(sock_path)
        usock = unix_listener(self.sock_path, 0o660, None)
        tsock = socket.socket()
        tsock.bind(("127.0.0.1", 0))
        tsock.listen(128)
        self.url = f"http://127.0.0.1:{tsock.getsockname()[1]}"
        self._servers = [
            uvicorn.Server(uvicorn.Config(create_app(node), log_level="warning", lifespan="off")),
            uvicorn.Server(
                uvicorn.Config(create_app(node, token=TOKEN), log_level="warning", lifespan="off")
            ),
        ]
        self._socks = [usock, tsock]
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not all(s.started for s in self._servers):
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.02)

    async def _main(self) -> None:
        try:
            await self.node.start()
            await asyncio.gather(
                *(s.serve(sockets=[k]) for s, k in zip(self._servers, self._socks, strict=True))
            )
        finally:
            await self.node.aclose()  # on the loop the sandboxes live on, as `corral serve` does

    def stop(self) -> None:
        for s in self._servers:
            s.should_exit = True
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "service did not stop"


def start(tmp: Path, store: EventStore, **kw: float) -> RunningService:
    from integrations_support import make_policy

    node = NodeService({"default": make_policy()}, store=store, reap_interval_s=0.1, **kw)
    return RunningService(node, tmp / "corral.sock")

"""``AsyncRemoteSandbox`` / ``RemoteSandbox``: the sandbox interface over the node service.

    async with AsyncRemoteSandbox() as sb:             # the node's Unix socket
        await sb.write_file("task.json", data)
        r = await sb.run("pytest -q", ctx=TraceContext(run_id="r1", episode_id="e1"))

    with RemoteSandbox(url="http://node:8750", token=t) as sb:   # sync: the same, on the portal loop
        r = sb.run("pytest -q")

The client's heartbeat keeps the lease while the client lives (one request for
all its sandboxes); if the client dies, the service reaps its sandboxes after
the lease.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import weakref
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote

from corral.errors import SandboxClosedError, SandboxError
from corral.events import TraceContext
from corral.harness import Command, FileEntry, OutputChunk, StreamItem, SyncSandbox
from corral.integrations.service._client import AsyncServiceClient, ServiceClient, error_from, lines
from corral.integrations.service._models import STREAM_LINE, SandboxInfo, StreamChunk, StreamResult
from corral.integrations.service._tarstream import kind_of, receive_download, tar_chunks
from corral.sandbox import ToolResult, new_id, normalize_command


class _SharedClients:
    """One client per event loop and service for the sandboxes that bring none, closed with the last.

    A trainer that makes a ``RemoteSandbox()`` per episode then holds one connection pool and
    one heartbeat request for all of them, not one each (a thousand idle sandboxes would
    otherwise send the service a heartbeat every few hundred milliseconds between them).
    """

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str | None, ...], tuple[AsyncServiceClient, set[int]]]
        ] = weakref.WeakKeyDictionary()

    def acquire(self, key: tuple[str | None, ...], user: object) -> AsyncServiceClient:
        per_loop = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        if key not in per_loop:
            socket_path, url, token = key
            per_loop[key] = (AsyncServiceClient(socket_path=socket_path, url=url, token=token), set())
        client, users = per_loop[key]
        users.add(id(user))
        return client

    async def release(self, key: tuple[str | None, ...], user: object) -> None:
        per_loop = self._by_loop.get(asyncio.get_running_loop(), {})
        entry = per_loop.get(key)
        if entry is None:
            return
        client, users = entry
        users.discard(id(user))
        if not users:
            del per_loop[key]
            await client.aclose()


_shared = _SharedClients()


def _run_body(
    command: Command,
    ctx: TraceContext | None,
    timeout: float | None,
    stdin: bytes | None,
    env: Mapping[str, str] | None,
) -> dict[str, Any]:
    normalize_command(command)  # a malformed command fails here, before any request
    return {
        "command": command if isinstance(command, str) else list(command),
        "ctx": ctx.model_dump(mode="json") if ctx is not None else None,
        "timeout": timeout,
        "stdin_b64": base64.b64encode(stdin).decode() if stdin is not None else None,
        "env": dict(env) if env is not None else None,
    }


class AsyncRemoteSandbox:
    """A sandbox in the node service, for asyncio code; the same interface as ``corral.AsyncSandbox``.

    Created on the service by ``start`` (``async with`` or the first call). ``policy``: the name
    of a policy the service was started with; ``image``: a reference the policy allows.
    ``client``: a client to use (default: one shared by the sandboxes of this event loop that
    name the same service, with one connection pool and one heartbeat for all of them).
    """

    def __init__(
        self,
        policy: str = "default",
        *,
        sandbox_id: str | None = None,
        image: str | None = None,
        socket_path: str | None = None,
        url: str | None = None,
        token: str | None = None,
        lease_s: float = 60.0,
        heartbeat: bool = True,
        owner: str | None = None,
        client: AsyncServiceClient | None = None,
    ) -> None:
        self.id = sandbox_id or new_id("sb")
        self.policy_name = policy
        self.image = image
        self.lease_s = lease_s
        self.host: str | None = None
        self._owner = owner
        self._heartbeat = heartbeat
        self._client = client
        self._shared = client is None  # then one of _shared's, released on close
        self._connect = (socket_path, url, token)
        self._start_lock: asyncio.Lock | None = None
        self._started = False
        self._closed = False

    @property
    def client(self) -> AsyncServiceClient:
        if self._client is None:
            self._client = _shared.acquire(self._connect, self)
        return self._client

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> Self:
        """Create the sandbox on the service (idempotent)."""
        if self._closed:
            raise SandboxClosedError(f"sandbox {self.id} is closed")
        if self._started:
            return self
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._started:
                body = {
                    "policy": self.policy_name,
                    "sandbox_id": self.id,
                    "lease_s": self.lease_s,
                    "image": self.image,
                    "owner": self._owner,
                }
                try:
                    resp = await self.client.request("POST", "/v1/sandboxes", json=body)
                except BaseException:
                    if self._shared and self._client is not None:  # nothing to close later
                        self._client = None
                        await _shared.release(self._connect, self)
                    raise
                self.host = SandboxInfo.model_validate(resp.json()).host
                if self._heartbeat:
                    self.client.heartbeats.add(self.id, self.lease_s)
                self._started = True
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._started:
                self.client.heartbeats.discard(self.id)
                with contextlib.suppress(SandboxClosedError):  # reaped already
                    await self.client.request("DELETE", f"/v1/sandboxes/{self.id}")
        finally:
            if self._shared and self._client is not None:
                await _shared.release(self._connect, self)

    async def _ready(self) -> AsyncServiceClient:
        if self._closed:
            raise SandboxClosedError(f"sandbox {self.id} is closed")
        await self.start()
        return self.client

    # -- calls ---------------------------------------------------------------------------

    async def run(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult:
        body = _run_body(command, ctx, timeout, stdin, env)
        client = await self._ready()
        url = f"/v1/sandboxes/{self.id}/run"
        reply = await client.request("POST", url, json=body, timeout=client.timeout(timeout))
        return ToolResult.model_validate_json(reply.content)

    async def stream(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamItem]:
        """Output chunks as the call produces them on the node, then its ``ToolResult``.

        Leaving the loop early closes the stream, and the service stops the call.
        """
        body = _run_body(command, ctx, timeout, stdin, env)
        client = await self._ready()
        url = f"/v1/sandboxes/{self.id}/stream"
        async with client.stream("POST", url, json_body=body, timeout=client.timeout(timeout)) as resp:
            async for line in lines(resp):
                msg = STREAM_LINE.validate_json(line)
                if isinstance(msg, StreamChunk):
                    yield OutputChunk(stream=msg.stream, data=msg.data)
                elif isinstance(msg, StreamResult):
                    yield msg.result
                    return
                else:
                    raise error_from(msg.error, msg.detail, msg.result)
        raise SandboxError("node service: the stream of a call ended without its result")

    # -- files ---------------------------------------------------------------------------

    async def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        client = await self._ready()
        await client.request(
            "PUT", f"/v1/sandboxes/{self.id}/file", params={"path": path, "mode": mode}, data=raw
        )

    async def read_file(self, path: str) -> bytes:
        client = await self._ready()
        resp = await client.request("GET", f"/v1/sandboxes/{self.id}/file", params={"path": path})
        return resp.content

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileEntry]:
        client = await self._ready()
        params = {"path": path, "recursive": recursive}
        reply = await client.request("GET", f"/v1/sandboxes/{self.id}/files", params=params)
        return [FileEntry.model_validate(e) for e in reply.json()]

    async def upload(self, src: str | Path, dest: str) -> None:
        """Copy a host file or tree into the sandbox, streamed as tar (links recreated, not followed)."""
        src = Path(src)
        kind = kind_of(src)
        client = await self._ready()
        params = {"dest": dest, "kind": kind}
        headers = {"Content-Type": "application/x-tar"}
        url = f"/v1/sandboxes/{self.id}/tree"
        await client.request("PUT", url, params=params, data=tar_chunks(src), headers=headers)

    async def download(self, src: str, dest: str | Path) -> None:
        """Copy a sandbox file or tree to the host, streamed as tar; links and special files are skipped."""
        dest = Path(dest)
        client = await self._ready()
        url = f"/v1/sandboxes/{self.id}/tree"
        async with client.stream("GET", url, params={"path": src}) as resp:
            kind = resp.headers.get("X-Corral-Kind", "")
            name = unquote(resp.headers.get("X-Corral-Name", ""))
            await receive_download(resp.content.iter_any(), kind, name, dest)


class RemoteSandbox(SyncSandbox):
    """A sandbox in the node service; the same interface as ``corral.Sandbox``.

    Created when constructed (an unknown policy or a full node fails here). ``client``: a
    ``ServiceClient`` shared by many sandboxes (one connection pool, one heartbeat).
    """

    def __init__(
        self,
        policy: str = "default",
        *,
        sandbox_id: str | None = None,
        image: str | None = None,
        socket_path: str | None = None,
        url: str | None = None,
        token: str | None = None,
        lease_s: float = 60.0,
        heartbeat: bool = True,
        owner: str | None = None,
        client: ServiceClient | None = None,
    ) -> None:
        inner = AsyncRemoteSandbox(
            policy,
            sandbox_id=sandbox_id,
            image=image,
            socket_path=socket_path,
            url=url,
            token=token,
            lease_s=lease_s,
            heartbeat=heartbeat,
            owner=owner,
            client=client.inner if client is not None else None,
        )
        super().__init__(inner, loop_portal=client.portal if client is not None else None)
        self.remote = inner
        self._portal.call(inner.start())  # on failure the inner sandbox has released its client
        self.host = inner.host
        self.policy_name = policy

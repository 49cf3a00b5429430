"""``AsyncPoolSandbox`` / ``PoolSandbox``: the sandbox interface over a node agent of the Ray pool.

Async is native: every method awaits the agent's ObjectRefs on the caller's
loop. The sync face runs the same object on the portal loop. A heartbeat keeps
the lease while the handle lives, so an idle rollout keeps its sandbox.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import ray
from ray.exceptions import RayActorError, RayTaskError

from corral.errors import CorralError, SandboxClosedError, SandboxUnavailableError
from corral.events import TraceContext
from corral.harness import Command, FileEntry, StreamItem, SyncSandbox
from corral.integrations.service import SandboxInfo
from corral.integrations.service._heartbeat import Heartbeats
from corral.integrations.service._tarstream import kind_of, receive_download, tar_chunks
from corral.sandbox import ToolResult, new_id, normalize_command

if TYPE_CHECKING:
    from corral.integrations.ray._pool import SandboxPool


async def _get(ref: Any) -> Any:
    """Await an ObjectRef; the agent's Corral errors come back as themselves, a dead agent as unavailable."""
    try:
        return await ref
    except RayTaskError as exc:
        if isinstance(exc.cause, CorralError):
            raise exc.cause from None
        raise
    except RayActorError as exc:
        raise SandboxUnavailableError(f"the pool's node agent is gone: {exc}") from exc


class _SharedBeats:
    """One heartbeat per event loop and node agent: the sandboxes of a rollout process renew their
    leases in one actor call, however many they are (its task ends when none is left)."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Heartbeats]] = (
            weakref.WeakKeyDictionary()
        )

    def for_agent(self, agent: Any) -> Heartbeats:
        # By the handle itself (held by the closure, so its id stays its own): an agent started again
        # under the same name after a shutdown is another actor, with beats of its own.
        per_loop = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        beats = per_loop.get(id(agent))
        if beats is None:
            beats = per_loop[id(agent)] = Heartbeats(lambda ids: _get(agent.heartbeat.remote(ids)))
        return beats


_beats = _SharedBeats()


class AsyncPoolSandbox:
    """A sandbox on the caller's node, for asyncio code; the same interface as ``corral.AsyncSandbox``.

    Created by ``start`` (``async with`` or the first call) on the node this code runs on.
    """

    def __init__(
        self,
        pool: SandboxPool,
        *,
        sandbox_id: str | None = None,
        lease_s: float | None = None,
        image: str | None = None,
        heartbeat: bool = True,
    ) -> None:
        self.id = sandbox_id or new_id("sb")
        self.pool = pool
        self.lease_s = lease_s or pool.lease_s
        self.image = image
        self.node_id: str | None = None
        self.host: str | None = None
        self._heartbeat = heartbeat
        self._agent: Any = None
        self._beats: Heartbeats | None = None
        self._start_lock: asyncio.Lock | None = None
        self._closed = False

    async def start(self) -> Self:
        """Create the sandbox in the agent of this node (idempotent)."""
        if self._closed:
            raise SandboxClosedError(f"sandbox {self.id} is closed")
        if self._agent is not None:
            return self
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._agent is None:
                node_id = str(ray.get_runtime_context().get_node_id())
                agent = self.pool.agent_for(node_id)
                try:
                    info: SandboxInfo = await _get(agent.create.remote(self.id, self.lease_s, self.image))
                except SandboxUnavailableError:
                    self.pool.forget_agent(node_id)  # gone: the next sandbox starts it again
                    raise
                self.node_id, self.host = node_id, info.host
                if self._heartbeat:
                    self._beats = _beats.for_agent(agent)
                    self._beats.add(self.id, self.lease_s)
                self._agent = agent
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
        if self._beats is not None:
            self._beats.discard(self.id)
        if self._agent is not None:
            await _get(self._agent.destroy.remote(self.id))

    async def _ready(self) -> Any:
        if self._closed:
            raise SandboxClosedError(f"sandbox {self.id} is closed")
        await self.start()
        return self._agent

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
        normalize_command(command)
        agent = await self._ready()
        cmd = command if isinstance(command, str) else list(command)
        ref = agent.run.remote(self.id, cmd, ctx, timeout, stdin, dict(env) if env is not None else None)
        result: ToolResult = await _get(ref)
        return result

    async def stream(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamItem]:
        """Output chunks as the call produces them, then its ``ToolResult``; leaving early stops the call."""
        normalize_command(command)
        agent = await self._ready()
        cmd = command if isinstance(command, str) else list(command)
        gen = agent.stream.remote(self.id, cmd, ctx, timeout, stdin, dict(env) if env is not None else None)
        finished = False
        try:
            async for ref in gen:
                item: StreamItem = await _get(ref)
                finished = isinstance(item, ToolResult)
                yield item
                if finished:
                    return
        except RayTaskError as exc:  # raised by the generator itself, not by one of its items
            if isinstance(exc.cause, CorralError):
                raise exc.cause from None
            raise
        finally:
            if not finished:
                ray.cancel(gen)

    # -- files ---------------------------------------------------------------------------

    async def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        agent = await self._ready()
        await _get(agent.write_file.remote(self.id, path, raw, mode))

    async def read_file(self, path: str) -> bytes:
        agent = await self._ready()
        data: bytes = await _get(agent.read_file.remote(self.id, path))
        return data

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileEntry]:
        agent = await self._ready()
        entries: list[FileEntry] = await _get(agent.list_files.remote(self.id, path, recursive))
        return entries

    async def upload(self, src: str | Path, dest: str) -> None:
        """Copy a host file or tree into the sandbox, in tar chunks (links recreated, not followed)."""
        src = Path(src)
        kind = kind_of(src)
        agent = await self._ready()
        tid = await _get(agent.upload_begin.remote(self.id, dest, kind))
        try:
            async for chunk in tar_chunks(src):
                await _get(agent.upload_chunk.remote(tid, chunk))
            await _get(agent.upload_end.remote(tid))
        except BaseException:
            agent.transfer_abort.remote(tid)
            raise

    async def download(self, src: str, dest: str | Path) -> None:
        """Copy a sandbox file or tree to the host, in tar chunks; links and special files are skipped."""
        agent = await self._ready()
        tid, kind, name = await _get(agent.download_begin.remote(self.id, src))

        async def chunks() -> AsyncIterator[bytes]:
            while (chunk := await _get(agent.download_next.remote(tid))) is not None:
                yield chunk

        try:
            await receive_download(chunks(), kind, name, Path(dest))
        except BaseException:
            agent.transfer_abort.remote(tid)
            raise


class PoolSandbox(SyncSandbox):
    """A sandbox on the caller's node; the same interface as ``corral.Sandbox`` (created when constructed)."""

    def __init__(
        self,
        pool: SandboxPool,
        *,
        sandbox_id: str | None = None,
        lease_s: float | None = None,
        image: str | None = None,
        heartbeat: bool = True,
    ) -> None:
        inner = AsyncPoolSandbox(
            pool, sandbox_id=sandbox_id, lease_s=lease_s, image=image, heartbeat=heartbeat
        )
        super().__init__(inner)
        self._portal.call(inner.start())
        self.node_id: str = inner.node_id or ""
        self.host = inner.host

"""The actors of a pool: a ``NodeAgent`` per node (its sandboxes) and one ``EventCollector`` (the store).

The agent is an async actor: its sandboxes are ``AsyncSandbox``es of a
``NodeService`` on the actor's event loop, so thousands of calls can be in flight
without a thread each. File trees move in chunks through ``_Pipe``s, one chunk in
flight per direction, so neither side holds a whole transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import ray

from corral.errors import SandboxClosedError
from corral.events import Event, EventStore, TraceContext
from corral.harness import FileEntry, StreamItem
from corral.integrations.service import NodeService, SandboxInfo
from corral.policy import Policy
from corral.sandbox import ToolResult, new_id

IDLE_TRANSFER_S = 120.0  # a transfer whose caller stopped sending or fetching is abandoned after this


class EventCollector:
    """Writes every agent's events to the central store (one per pool)."""

    def __init__(self, store_path: str) -> None:
        self.store = EventStore(store_path)

    def append(self, events: list[Event]) -> int:
        self.store.append_many(events)
        return len(events)

    def flush(self) -> int:
        self.store.flush()
        return self.store.stats.committed

    def close(self) -> None:
        self.store.close()


class _Pipe:
    """Chunks between a caller's sequence of actor calls and one task on the agent's loop."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
        self.task: asyncio.Task[Any] | None = None

    async def race(self, op: Any) -> Any:
        """``op`` unless the task ends first (then its error, or SandboxClosedError if none)."""
        fut = asyncio.ensure_future(op)
        assert self.task is not None
        await asyncio.wait([fut, self.task], return_when=asyncio.FIRST_COMPLETED)
        if fut.done():
            return fut.result()
        fut.cancel()
        self.task.result()  # raises the task's error
        raise SandboxClosedError("the transfer already ended")

    async def incoming(self) -> AsyncIterator[bytes]:
        while (chunk := await asyncio.wait_for(self.q.get(), IDLE_TRANSFER_S)) is not None:
            yield chunk


class NodeAgent:
    """The sandboxes of one node for one policy (an async Ray actor)."""

    def __init__(self, policy: Policy, collector: Any, lease_s: float, batch: int = 256) -> None:
        self._collector = collector
        self._buf: list[Event] = []
        self._lock = threading.Lock()  # collectors emit from their own threads
        self._batch = batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pipes: dict[str, _Pipe] = {}
        self.node = NodeService({"default": policy}, default_lease_s=lease_s, event_sinks=[self._buffer])

    # -- events ------------------------------------------------------------------------------

    def _buffer(self, ev: Event) -> None:
        with self._lock:
            self._buf.append(ev)
            full = len(self._buf) >= self._batch
        if full and self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.ship()))

    async def ship(self) -> int:
        """Send the buffered events to the collector (in order: Ray keeps one caller's submission order)."""
        self._loop = asyncio.get_running_loop()
        with self._lock:
            batch, self._buf = self._buf, []
        if batch:
            await self._collector.append.remote(batch)
        return len(batch)

    # -- sandboxes ---------------------------------------------------------------------------

    async def node_id(self) -> str:
        self._loop = asyncio.get_running_loop()
        return str(ray.get_runtime_context().get_node_id())

    async def create(self, sandbox_id: str | None, lease_s: float | None, image: str | None) -> SandboxInfo:
        self._loop = asyncio.get_running_loop()
        return await self.node.create(sandbox_id=sandbox_id, lease_s=lease_s, image=image)

    async def run(
        self,
        sandbox_id: str,
        command: str | list[str],
        ctx: TraceContext | None,
        timeout: float | None,
        stdin: bytes | None,
        env: dict[str, str] | None,
    ) -> ToolResult:
        try:
            return await self.node.run(sandbox_id, command, ctx, timeout=timeout, stdin=stdin, env=env)
        finally:
            await self.ship()  # a call returns once its events are with the collector

    async def stream(
        self,
        sandbox_id: str,
        command: str | list[str],
        ctx: TraceContext | None,
        timeout: float | None,
        stdin: bytes | None,
        env: dict[str, str] | None,
    ) -> AsyncIterator[StreamItem]:
        items = self.node.stream(sandbox_id, command, ctx, timeout=timeout, stdin=stdin, env=env)
        try:
            async for item in items:
                if isinstance(item, ToolResult):
                    await self.ship()
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]  # cancelled by the caller: the call stops

    async def heartbeat(self, ids: list[str]) -> list[str]:
        return self.node.heartbeat_many(ids)

    async def destroy(self, sandbox_id: str) -> bool:
        try:
            return await self.node.destroy(sandbox_id)
        finally:
            await self.ship()

    async def live(self) -> int:
        return len(self.node)

    async def shutdown(self) -> None:
        await self.node.aclose()
        await self.ship()

    # -- files -------------------------------------------------------------------------------

    async def write_file(self, sandbox_id: str, path: str, data: bytes, mode: int) -> None:
        try:
            await self.node.write_file(sandbox_id, path, data, mode=mode)
        finally:
            await self.ship()

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        try:
            return await self.node.read_file(sandbox_id, path)
        finally:
            await self.ship()

    async def list_files(self, sandbox_id: str, path: str, recursive: bool) -> list[FileEntry]:
        return await self.node.list_files(sandbox_id, path, recursive=recursive)

    def _keep(self, pipe: _Pipe, task: asyncio.Task[Any]) -> str:
        """Register a transfer; once its task ends, its caller has IDLE_TRANSFER_S to learn how."""
        tid = new_id("tr")
        pipe.task = task
        self._pipes[tid] = pipe
        loop = asyncio.get_running_loop()
        task.add_done_callback(lambda _t: loop.call_later(IDLE_TRANSFER_S, self._pipes.pop, tid, None))
        return tid

    async def upload_begin(self, sandbox_id: str, dest: str, kind: str) -> str:
        self.node.heartbeat(sandbox_id)  # an unknown sandbox fails here, before any chunk is sent
        pipe = _Pipe()
        return self._keep(
            pipe, asyncio.ensure_future(self.node.upload(sandbox_id, dest, kind, pipe.incoming()))
        )

    async def upload_chunk(self, tid: str, data: bytes) -> None:
        pipe = self._pipe(tid)
        await pipe.race(pipe.q.put(data))

    async def upload_end(self, tid: str) -> None:
        pipe = self._pipe(tid)
        try:
            await pipe.race(pipe.q.put(None))
            assert pipe.task is not None
            await pipe.task
        finally:
            self._pipes.pop(tid, None)
            await self.ship()

    async def download_begin(self, sandbox_id: str, src: str) -> tuple[str, str, str]:
        """Stage ``src`` and start sending it; returns (transfer id, kind, name)."""
        d = await self.node.download(sandbox_id, src)
        await self.ship()
        pipe = _Pipe()

        async def feed() -> None:
            try:
                async for chunk in d.chunks():
                    await asyncio.wait_for(pipe.q.put(chunk), IDLE_TRANSFER_S)
                await asyncio.wait_for(pipe.q.put(None), IDLE_TRANSFER_S)
            finally:
                await d.aclose()

        return self._keep(pipe, asyncio.ensure_future(feed())), d.kind, d.name

    async def download_next(self, tid: str) -> bytes | None:
        """The next chunk of a download; None at its end."""
        pipe = self._pipe(tid)
        chunk: bytes | None = pipe.q.get_nowait() if not pipe.q.empty() else await pipe.race(pipe.q.get())
        if chunk is None:
            self._pipes.pop(tid, None)
        return chunk

    async def transfer_abort(self, tid: str) -> None:
        pipe = self._pipes.pop(tid, None)
        if pipe is not None and pipe.task is not None:
            pipe.task.cancel()
            with contextlib.suppress(BaseException):
                await pipe.task

    def _pipe(self, tid: str) -> _Pipe:
        pipe = self._pipes.get(tid)
        if pipe is None:
            raise SandboxClosedError(f"no transfer {tid} (ended, abandoned or never started)")
        return pipe

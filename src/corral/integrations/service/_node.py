"""The node's sandboxes: created per named policy, leased to a client, reaped when the lease runs out.

Every sandbox is an ``AsyncSandbox`` on the event loop that serves the node (the
HTTP server's, or a Ray actor's): no thread per call. A client that crashes
stops renewing its lease (every call and heartbeat renews it), so its sandboxes
are destroyed after ``lease_s``. State of a previous service process that died is
reaped by the sandbox core on first use.

Bookkeeping is constant-time per call and per create, however many sandboxes
live: leases sit in a dict, and the reaper pops a heap of deadlines, looking
only at leases that may have run out (a renewal does not touch the heap; a
popped lease that was renewed meanwhile is pushed back at its new deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from corral.errors import InputError, SandboxClosedError
from corral.events import Event, EventStore, TraceContext
from corral.harness import AsyncSandbox, FileEntry, Harness, StreamItem
from corral.integrations.service._metrics import ServiceMetrics
from corral.integrations.service._models import SandboxInfo
from corral.integrations.service._tarstream import TarLimits, tar_chunks, untar_into
from corral.policy import FilesSection, Policy
from corral.sandbox import ToolResult, new_id


@dataclass(eq=False)
class _Lease:
    sandbox: AsyncSandbox
    policy: str
    lease_s: float
    owner: str | None
    last_seen: float = field(default_factory=time.monotonic)
    calls: int = 0
    busy: int = 0  # calls and transfers in flight: a busy sandbox is never reaped

    @property
    def due(self) -> float:
        return self.last_seen + self.lease_s


class Download:
    """A file or tree copied out of a sandbox and staged for sending as tar chunks.

    ``kind``: ``file`` or ``dir``; ``name``: the file's name. The staged copy is removed when
    the chunks have been sent, or by ``aclose`` if they never are.
    """

    def __init__(self, kind: str, name: str, root: Path, tmp: Path, metrics: ServiceMetrics) -> None:
        self.kind = kind
        self.name = name
        self._root = root
        self._tmp = tmp
        self._metrics = metrics
        self._closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in tar_chunks(self._root, name=self.name):
                self._metrics.file_bytes.labels(direction="out").inc(len(chunk))
                yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(shutil.rmtree, self._tmp, True)


class NodeService:
    """Owns every sandbox of this node, on one event loop. The HTTP layer is a thin shell over it.

    ``spool_dir``: where uploads and downloads are staged on their way (default: the system's
    temporary directory); each transfer holds at most the policy's ``files.transfer_max_bytes``
    there, and removes it when it ends.
    """

    def __init__(
        self,
        policies: Mapping[str, Policy],
        *,
        store: EventStore | None = None,
        default_lease_s: float = 300.0,
        max_sandboxes: int = 4096,
        reap_interval_s: float = 1.0,
        host: str | None = None,
        event_sinks: Sequence[Callable[[Event], None]] = (),
        spool_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if "default" not in policies:
            raise InputError("the service needs a policy named 'default'")
        self.policies = dict(policies)
        self.store = store
        self.metrics = ServiceMetrics()
        self.default_lease_s = default_lease_s
        self.max_sandboxes = max_sandboxes
        self.reap_interval_s = reap_interval_s
        self.spool_dir = Path(spool_dir) if spool_dir is not None else Path(tempfile.gettempdir())
        self._harnesses = {
            name: Harness(p, store=store, sinks=[self.metrics.observe, *event_sinks], host=host)
            for name, p in policies.items()
        }
        self._leases: dict[str, _Lease] = {}
        self._pending: set[str] = set()  # ids being created
        self._deadlines: list[tuple[float, int, str, _Lease]] = []
        self._seq = itertools.count()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self._finished = False
        self._starting: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start what every sandbox needs (collectors, the reaper) before the first client comes.

        Off the loop: starting the exec tracer takes seconds, and a tracer that cannot start
        stops the service here rather than failing its first sandbox.
        """
        if self._starting is None or self._starting.get_loop() is not asyncio.get_running_loop():
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)  # concurrent first creates wait for one start

    async def _start(self) -> None:
        for harness in self._harnesses.values():
            await asyncio.to_thread(harness.observers)
        self._ensure_reaper()

    # -- lifecycle of sandboxes ---------------------------------------------------------------

    async def create(
        self,
        policy: str = "default",
        *,
        sandbox_id: str | None = None,
        lease_s: float | None = None,
        owner: str | None = None,
        image: str | None = None,
    ) -> SandboxInfo:
        if self._closed:
            raise SandboxClosedError("the node service is shutting down")
        harness = self._harnesses.get(policy)
        if harness is None:
            raise InputError(f"unknown policy {policy!r}; this service has {sorted(self._harnesses)}")
        if len(self._leases) + len(self._pending) >= self.max_sandboxes:
            raise InputError(f"node is full ({self.max_sandboxes} sandboxes)")
        sid = sandbox_id or new_id("sb")
        if sid in self._leases or sid in self._pending:
            raise InputError(f"sandbox {sid} exists")
        self._pending.add(sid)
        try:
            await self.start()
            sb = harness.async_sandbox(sid, image=image)
            await sb.start()
        finally:
            self._pending.discard(sid)
        if self._closed:  # shut down while this one was being built
            await sb.close()
            raise SandboxClosedError("the node service is shutting down")
        lease = _Lease(sb, policy, lease_s or self.default_lease_s, owner)
        self._leases[sid] = lease
        heapq.heappush(self._deadlines, (lease.due, next(self._seq), sid, lease))
        self.metrics.live.set(len(self._leases))
        self.metrics.created.inc()
        return self._info(sid, lease)

    def _get(self, sid: str) -> _Lease:
        lease = self._leases.get(sid)
        if lease is None:
            raise SandboxClosedError(f"no sandbox {sid} (destroyed, reaped or never created)")
        lease.last_seen = time.monotonic()
        return lease

    @contextlib.contextmanager
    def _using(self, sid: str, *, call: bool = False) -> Iterator[_Lease]:
        lease = self._get(sid)
        lease.busy += 1
        try:
            yield lease
        except asyncio.CancelledError:
            if self._leases.get(sid) is lease:
                raise  # the caller went away
            # The sandbox was destroyed under the call (its jail cancels what runs in it): say so.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            raise SandboxClosedError(f"sandbox {sid} was destroyed while this call ran") from None
        except Exception:
            self.metrics.errors.inc()
            raise
        finally:
            lease.busy -= 1
            lease.last_seen = time.monotonic()
            if call:
                lease.calls += 1

    def _count(self, result: ToolResult) -> None:
        self.metrics.calls.inc()
        if result.blocked:
            self.metrics.blocked.inc()

    async def run(
        self,
        sid: str,
        command: str | list[str],
        ctx: TraceContext | None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult:
        with self._using(sid, call=True) as lease:
            result = await lease.sandbox.run(command, ctx, timeout=timeout, stdin=stdin, env=env)
        self._count(result)
        return result

    async def stream(
        self,
        sid: str,
        command: str | list[str],
        ctx: TraceContext | None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamItem]:
        """Output chunks as the call produces them, then its ``ToolResult`` (closing this stops the call)."""
        with self._using(sid, call=True) as lease:
            items = lease.sandbox.stream(command, ctx, timeout=timeout, stdin=stdin, env=env)
            try:
                async for item in items:
                    if isinstance(item, ToolResult):
                        self._count(item)
                    yield item
            finally:
                await items.aclose()  # type: ignore[attr-defined]

    # -- files -------------------------------------------------------------------------------

    def files_policy(self, sid: str) -> FilesSection:
        return self._get(sid).sandbox.policy.files

    async def write_file(self, sid: str, path: str, data: bytes, *, mode: int = 0o644) -> None:
        with self._using(sid) as lease:
            await lease.sandbox.write_file(path, data, mode=mode)
        self.metrics.file_bytes.labels(direction="in").inc(len(data))

    async def read_file(self, sid: str, path: str) -> bytes:
        with self._using(sid) as lease:
            data = await lease.sandbox.read_file(path)
        self.metrics.file_bytes.labels(direction="out").inc(len(data))
        return data

    async def list_files(self, sid: str, path: str = ".", *, recursive: bool = False) -> list[FileEntry]:
        with self._using(sid) as lease:
            return await lease.sandbox.list_files(path, recursive=recursive)

    def _spool(self, what: str) -> Path:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"corral-{what}-", dir=self.spool_dir))

    async def upload(self, sid: str, dest: str, kind: str, chunks: AsyncIterable[bytes]) -> None:
        """Unpack a tar stream (``kind`` file: one file; dir: a tree) into the sandbox at ``dest``.

        The stream is staged on the host under the caps of the sandbox's policy, then moved
        in with the sandbox's own ``upload`` (its path rules, its uid, its event).
        """
        if kind not in ("file", "dir"):
            raise InputError(f"kind must be 'file' or 'dir', not {kind!r}")
        with self._using(sid) as lease:
            f = lease.sandbox.policy.files
            limits = TarLimits(f.file_max_bytes, f.transfer_max_bytes, f.entries_max, symlinks=True)
            tmp = self._spool("upload")
            try:
                got = await untar_into(chunks, tmp, limits=limits)
                if kind == "file":
                    names = os.listdir(tmp)
                    if got.files != 1 or len(names) != 1:
                        raise InputError("a file upload must hold exactly one regular file")
                    src = tmp / names[0]
                else:
                    src = tmp
                await lease.sandbox.upload(src, dest)
            finally:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
        self.metrics.file_bytes.labels(direction="in").inc(got.bytes)

    async def download(self, sid: str, src: str) -> Download:
        """Copy ``src`` out of the sandbox (its own ``download``), then hand it out as tar chunks."""
        with self._using(sid) as lease:
            tmp = self._spool("download")
            out = tmp / "out"
            try:
                await lease.sandbox.download(src, out)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
                raise
        kind = "dir" if out.is_dir() else "file"
        return Download(kind, PurePosixPath(src).name or ".", out, tmp, self.metrics)

    # -- leases ------------------------------------------------------------------------------

    def heartbeat(self, sid: str) -> None:
        self._get(sid)

    def heartbeat_many(self, ids: Sequence[str]) -> list[str]:
        """Renew each lease; returns the ids this service does not hold."""
        unknown = []
        now = time.monotonic()
        for sid in ids:
            lease = self._leases.get(sid)
            if lease is None:
                unknown.append(sid)
            else:
                lease.last_seen = now
        return unknown

    async def destroy(self, sid: str) -> bool:
        lease = self._leases.pop(sid, None)
        self.metrics.live.set(len(self._leases))
        if lease is None:
            return False
        await lease.sandbox.close()
        return True

    def sandboxes(self) -> list[SandboxInfo]:
        return [self._info(sid, lease) for sid, lease in self._leases.items()]

    def info(self, sid: str) -> SandboxInfo:
        return self._info(sid, self._get(sid))

    def _info(self, sid: str, lease: _Lease) -> SandboxInfo:
        assert lease.sandbox.harness is not None
        return SandboxInfo(
            id=sid,
            policy=lease.policy,
            host=lease.sandbox.harness.host,
            lease_s=lease.lease_s,
            owner=lease.owner,
            calls=lease.calls,
            idle_s=round(time.monotonic() - lease.last_seen, 3),
        )

    def __len__(self) -> int:
        return len(self._leases)

    # -- reaping -----------------------------------------------------------------------------

    def expired(self, now: float | None = None) -> list[str]:
        """Ids whose lease ran out (popped from the deadline heap; renewed ones go back at their new due)."""
        now = time.monotonic() if now is None else now
        out = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, sid, lease = heapq.heappop(heap)
            if self._leases.get(sid) is not lease:
                continue  # destroyed (or replaced under the same id)
            if lease.busy or lease.due > now:
                due = max(lease.due, now + self.reap_interval_s) if lease.busy else lease.due
                heapq.heappush(heap, (due, next(self._seq), sid, lease))
                continue
            out.append(sid)
        return out

    async def reap_expired(self, now: float | None = None) -> list[str]:
        ids = self.expired(now)
        done = await asyncio.gather(*(self.destroy(sid) for sid in ids), return_exceptions=True)
        reaped = [sid for sid, ok in zip(ids, done, strict=True) if ok is True]
        if reaped:
            self.metrics.reaped.inc(len(reaped))
        return reaped

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_loop(), name="corral-reaper")

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval_s)
            await self.reap_expired()
            self.metrics.store_lag.set(self.store_pending())

    def store_pending(self) -> int:
        return self.store.stats.pending if self.store is not None else 0

    async def aclose(self) -> None:
        """Destroy every sandbox (a clean stop leaves nothing behind) and flush the store."""
        if self._finished:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await asyncio.gather(*(self.destroy(sid) for sid in list(self._leases)), return_exceptions=True)
        await asyncio.to_thread(self._close_harnesses)
        self._finished = True

    def _close_harnesses(self) -> None:
        for h in self._harnesses.values():
            h.close()
        if self.store is not None:
            self.store.flush()

    def close(self) -> None:
        """``aclose`` for code outside any event loop (a service that never served, or whose loop ended)."""
        if self._reaper is not None and self._reaper.get_loop().is_closed():
            self._reaper = None
        asyncio.run(self.aclose())

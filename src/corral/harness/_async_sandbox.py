"""``AsyncSandbox``: one per episode, composing confinement with egress, events and detection.

Per call: inspect the command (a blocked call never runs), refuse to run when
events can no longer be recorded, run it in the Jail, record the tool call, its
resource use and every decision as events tagged with the trace context, gather
the runtime alerts it caused, and return a ``ToolResult``. Calls to one sandbox
may run concurrently; nothing here blocks the event loop for long.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from corral.errors import EgressError, SandboxClosedError, StoreError
from corral.events import Alert, Event, EventStore, FileTransfer, Level, TraceContext
from corral.harness._call_events import CallRecorder, dedupe, limit_alert, now
from corral.harness._harness import DEFAULT_STORE, EventSink, Harness, StoreArg, parse_workspace
from corral.harness._interface import Command, FileEntry, OutputChunk, StreamItem
from corral.harness._transfer import Transfers
from corral.images import ImageLease
from corral.policy import Policy
from corral.sandbox import (
    ImageView,
    Jail,
    NetworkAttachment,
    ToolResult,
    new_id,
    normalize_command,
    pace,
    preflight,
)


class AsyncSandbox:
    """A sandbox for one episode, for asyncio code: ``async with AsyncSandbox(policy) as sb``.

    Standalone it makes a private Harness; many sandboxes of one process should
    share one (``harness.async_sandbox()``), so that rules are compiled once and
    one egress proxy serves them all. ``image``: a reference (``dir:``, ``oci:``,
    ``docker-archive:``, ``docker://``) or a resolved image; default the policy's
    ``environment.image``. ``workspace``: a host directory copied on write into the
    workspace (never changed itself).
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        image: str | ImageView | None = None,
        workspace: str | os.PathLike[str] | None = None,
        sandbox_id: str | None = None,
        store: StoreArg = DEFAULT_STORE,
        sinks: Sequence[EventSink] = (),
        host: str | None = None,
        harness: Harness | None = None,
    ) -> None:
        self._policy_arg = policy
        self._image_arg = image
        self._workspace = parse_workspace(workspace)  # a bad template fails before anything starts
        self._store_arg: EventStore | str | None = store
        self._sinks = sinks
        self._host_arg = host
        self._harness_arg = harness
        self.id = sandbox_id or new_id("sb")
        self._jail: Jail | None = None
        self._lease: ImageLease | None = None
        self._network: NetworkAttachment | None = None
        self._own_harness = False
        self._start_lock: asyncio.Lock | None = None
        self._closed = False
        self.harness: Harness | None = harness
        self.policy: Policy = (
            policy if policy is not None else (harness.policy if harness else Policy.default())
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> Self:
        """Build the sandbox (idempotent; the first call, run or file operation does it too)."""
        if self._jail is not None:
            return self
        if self._closed:
            raise SandboxClosedError(f"sandbox {self.id} is closed")
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._jail is None:
                await self._build()
        return self

    async def _build(self) -> None:
        preflight()  # a machine that cannot confine calls says so before anything else starts
        harness = self._harness_arg
        if harness is None:
            harness = Harness(self.policy, store=self._store_arg, sinks=self._sinks, host=self._host_arg)  # type: ignore[arg-type]
            self._own_harness = True
        self.harness = harness
        try:
            # A policy that grants GPUs this machine lacks fails here, before anything is built.
            gpu = harness.gpu.grant(self.id, self.policy.gpu)
            # A pull or unpack runs tools: never on the loop's thread.
            image, self._lease = await asyncio.to_thread(
                harness.resolve_image, self._image_arg or self.policy.environment.image
            )
            if self.policy.network.mode != "none":
                # Netlink work (pyroute2 runs its own event loop): never on this loop's thread.
                egress = await asyncio.to_thread(harness.egress)
                self._network = await asyncio.to_thread(egress.attach, self.id)
            self._jail = await Jail.create(
                self.policy,
                sandbox_id=self.id,
                image=image,
                workspace=self._workspace,
                network=self._network,
                observers=harness.observers(),
                gpu=gpu,
            )
        except BaseException:
            harness.gpu.release(self.id)
            if self._lease is not None:
                self._lease.close()
            if self._network is not None:
                await asyncio.to_thread(self._network.close)
            if self._own_harness:
                harness.close()
            raise
        self._recorder = CallRecorder(self.policy, self.id, harness.host, self.sandbox_ip)
        self._transfers = Transfers(
            self._jail.files,
            workspace=self._jail.workspace,
            files=self.policy.files,
            record=self._record_transfer,
        )

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
            if self._jail is not None:
                await self._jail.close()  # also closes the network attachment
        finally:
            if self._lease is not None:
                self._lease.close()
            if self.harness is not None:
                self.harness.gpu.release(self.id)
                self.harness.forget_sandbox(self.id)
            if self._own_harness and self.harness is not None:
                self.harness.close()

    @property
    def workspace(self) -> str:
        """The workspace's path inside the sandbox."""
        return self.policy.workspace.mount_point

    @property
    def uid(self) -> int:
        """The host uid this sandbox's processes run as (unique among live sandboxes)."""
        return self._started().uid

    @property
    def sandbox_ip(self) -> str | None:
        return self._network.sandbox_ip if self._network is not None else None

    def _started(self) -> Jail:
        if self._closed:
            raise SandboxClosedError(f"sandbox {self.id} is closed")
        if self._jail is None:
            raise SandboxClosedError(
                f"sandbox {self.id} is not started (use `async with` or `await start()`)"
            )
        return self._jail

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
        """Run one tool call. Harness failures raise ``CorralError``; the command's own do not."""
        return await self._call(command, ctx, timeout, stdin, env, None)

    async def stream(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamItem]:
        """Output chunks as the call produces them, then its ``ToolResult``."""
        chunks: asyncio.Queue[OutputChunk | None] = asyncio.Queue()
        task = asyncio.ensure_future(
            self._call(
                command,
                ctx,
                timeout,
                stdin,
                env,
                lambda s, d: chunks.put_nowait(OutputChunk(stream=s, data=d)),
            )
        )
        task.add_done_callback(lambda _t: chunks.put_nowait(None))
        try:
            while True:
                item = await chunks.get()
                if item is None:
                    break
                yield item
            yield await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _call(
        self,
        command: Command,
        ctx: TraceContext | None,
        timeout: float | None,
        stdin: bytes | None,
        env: Mapping[str, str] | None,
        on_output: object,
    ) -> ToolResult:
        await pace()  # calls arriving together take turns: each step below is work on the loop
        ctx = ctx or TraceContext()
        if ctx.tool_call_id is None:
            ctx = ctx.with_tool_call(new_id("tc"))
        _argv, text = normalize_command(command)  # malformed commands fail before anything happens
        await self.start()
        jail = self._started()
        harness = self.harness
        assert harness is not None
        start_ns = now()
        tcid = ctx.tool_call_id or ""
        harness.begin_call(tcid)  # from here, every alert of this call is collected for its result
        try:
            inspection = harness.detector.inspect_command(text, ctx=ctx, sandbox_id=self.id)
            self._emit_alerts(inspection.alerts, ctx, start_ns)
            if inspection.blocked:
                reason = "; ".join(f"{a.rule_id}: {a.title} ({a.level.value})" for a in inspection.alerts)
                return await self._refuse(text, ctx, start_ns, inspection.alerts, "policy", reason)
            try:
                harness.check_store()
            except StoreError as exc:
                result = await self._refuse(
                    text, ctx, start_ns, inspection.alerts, "store_failure", str(exc), flush=False
                )
                exc.result = result
                raise
            if jail.gpu is not None:
                unwatched = self._gpu_unwatched(harness.gpu.problem(), ctx)
                if unwatched is not None:
                    return await self._refuse(
                        text, ctx, start_ns, inspection.alerts, "gpu_monitor_failure", unwatched
                    )
            egress_failed = False
            if self._network is not None:
                self._network.check()  # raises EgressError: the call never starts without its proxy
            outcome = await jail.run(
                command,
                ctx=ctx,
                timeout=timeout,
                stdin=stdin,
                env=env,
                on_output=on_output,  # type: ignore[arg-type]
            )
            if self._network is not None:
                egress_failed = not self._network_ok()
            extra = limit_alert(outcome)
            if extra is not None:
                self._emit_alerts([extra], ctx, now())
            if outcome.lingering:
                harness.linger(tcid, self.id)
        finally:
            runtime = harness.end_call(tcid) + harness.take_late(self.id)
        alerts = dedupe(inspection.alerts + runtime)
        gpu_record = harness.gpu.summary(tcid)
        if jail.gpu is None and gpu_record is not None and not gpu_record.gpu_time_s:
            gpu_record = None  # no grant and no GPU use: nothing to report
        result = self._recorder.result(outcome, alerts, egress_failed, gpu_record)
        harness.emit_many(self._recorder.ran(outcome, result, start_ns))
        await harness.aflush()
        return result

    async def _refuse(
        self,
        text: str,
        ctx: TraceContext,
        start_ns: int,
        alerts: list[Alert],
        stop: str,
        reason: str,
        *,
        flush: bool = True,
    ) -> ToolResult:
        harness = self.harness
        assert harness is not None
        result, events = self._recorder.refused(text, ctx, start_ns, alerts, stop, reason)  # type: ignore[arg-type]
        try:
            harness.emit_many(events)
            if flush:
                await harness.aflush()
        except StoreError:
            if flush:
                raise
        return result

    def _gpu_unwatched(self, problem: str | None, ctx: TraceContext) -> str | None:
        """A granted call the GPU monitor cannot watch: the refusal's reason (``stop``), or an alert
        on the call and None (``warn``)."""
        if problem is None:
            return None
        reason = f"the GPU monitor cannot watch this call: {problem}"
        if self.policy.gpu.on_monitor_failure == "stop":
            return reason
        alert = Alert(
            rule_id="corral.monitor.gpu_unwatched",
            title="Call holds a GPU the monitor cannot watch",
            level=Level.medium,
            category="monitor_failure",
            matched={"error": problem},
        )
        self._emit_alerts([alert], ctx, now())
        return None

    def _network_ok(self) -> bool:
        assert self._network is not None
        try:
            self._network.check()
        except EgressError:
            return False
        return True

    def _emit_alerts(self, alerts: list[Alert], ctx: TraceContext, t_ns: int) -> None:
        assert self.harness is not None
        for a in alerts:
            self.harness.emit(self._recorder.event(t_ns, a, ctx))

    # -- files ---------------------------------------------------------------------------

    def _record_transfer(self, data: FileTransfer) -> None:
        assert self.harness is not None
        # The trainer's act: recorded as the harness's, under no tool call, and never inspected as a command.
        self.harness.emit(Event(data=data, host=self.harness.host, sandbox_id=self.id))

    async def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None:
        """Write a file inside the sandbox (relative to the workspace), owned by the sandbox's user."""
        await self.start()
        await self._transfers.write_file(path, data, mode=mode)

    async def read_file(self, path: str) -> bytes:
        await self.start()
        return await self._transfers.read_file(path)

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileEntry]:
        await self.start()
        return await self._transfers.list_files(path, recursive=recursive)

    async def upload(self, src: str | Path, dest: str) -> None:
        """Copy a host file or directory into the sandbox (``dest`` ending in / takes the file's name)."""
        await self.start()
        await self._transfers.upload(src, dest)

    async def download(self, src: str, dest: str | Path) -> None:
        """Copy a sandbox file or directory to the host; links and special files are not copied."""
        await self.start()
        await self._transfers.download(src, dest)

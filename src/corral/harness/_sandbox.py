"""The public ``Sandbox``: one per episode, composing confinement with events and detection.

Per call: inspect the command (a blocked call never runs), run it in the Jail,
record the tool call, its resource use and every decision as events tagged with
the trace context, and return a ``ToolResult``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

from corral.events import (
    Event,
    EventStore,
    PolicyDecision,
    ResourceSample,
    ToolCall,
    TraceContext,
)
from corral.harness._host import node_address
from corral.policy import Policy
from corral.sandbox import CallOutcome, Jail, ToolResult, new_id, normalize_command

EventSink = Callable[[Event], None]

_STOP_TEXT = {
    "timeout": "wall-clock limit reached; every process of the call was killed",
    "memory": "memory limit reached; the kernel's OOM killer ended the call",
    "pids": "process-count limit reached (fork bomb?); every process of the call was killed",
}


class Sandbox:
    """A sandbox for one episode. Use as a context manager; ``run`` each tool call."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        sandbox_id: str | None = None,
        store: EventStore | None = None,
        sinks: Sequence[EventSink] = (),
        host: str | None = None,
    ) -> None:
        self.policy = policy if policy is not None else Policy.default()
        self.host = host or node_address()
        self.store = store
        self._sinks: list[EventSink] = list(sinks)
        if store is not None:
            self._sinks.append(store.append)
        self._jail = Jail(self.policy, sandbox_id=sandbox_id)
        self.id = self._jail.id
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._jail.close()

    @property
    def workspace(self) -> str:
        return str(self._jail.workspace)

    # -- calls -----------------------------------------------------------------------

    def run(
        self,
        command: str | Sequence[str],
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult:
        """Run one tool call. Harness failures raise ``CorralError``; the command's own do not."""
        ctx = ctx or TraceContext()
        if ctx.tool_call_id is None:
            ctx = ctx.with_tool_call(new_id("tc"))
        normalize_command(command)  # reject malformed commands before anything happens
        with self._lock:
            start_ns = time.time_ns()
            outcome = self._jail.run(command, ctx=ctx, timeout=timeout, stdin=stdin, env=env)
            result = self._result(outcome)
            self._record(outcome, result, start_ns)
            return result

    def _result(self, o: CallOutcome) -> ToolResult:
        raw = o.raw
        return ToolResult(
            exit_code=raw.exit_code,
            stdout=raw.stdout.decode("utf-8", "replace"),
            stderr=raw.stderr.decode("utf-8", "replace"),
            stdout_truncated=raw.stdout_truncated,
            stderr_truncated=raw.stderr_truncated,
            duration_s=raw.duration_s,
            stop_reason=raw.stop_reason,
            ctx=o.scope.ctx,
            sandbox_id=self.id,
            cpu_time_s=raw.usage.cpu_time_s,
            memory_peak_bytes=raw.usage.memory_peak_bytes,
        )

    def _emit(self, events: Sequence[Event]) -> None:
        for ev in events:
            for sink in self._sinks:
                sink(ev)

    def _record(self, o: CallOutcome, r: ToolResult, start_ns: int) -> None:
        env = {"host": self.host, "sandbox_id": self.id, "ctx": r.ctx}
        end_ns = start_ns + int(r.duration_s * 1e9)
        events = [
            Event(
                time_ns=start_ns,
                data=ToolCall(
                    command=o.command_text,
                    start_ns=start_ns,
                    end_ns=end_ns,
                    exit_code=r.exit_code,
                    blocked=r.blocked,
                    stop_reason=r.stop_reason,
                    host_ip=self.host,
                ),
                **env,
            ),
            Event(
                time_ns=end_ns,
                data=ResourceSample(
                    cpu_time_s=o.raw.usage.cpu_time_s,
                    memory_bytes=o.raw.usage.memory_peak_bytes,
                    memory_peak_bytes=o.raw.usage.memory_peak_bytes,
                    pids=o.raw.usage.pids_current,
                    final=True,
                ),
                **env,
            ),
        ]
        if r.stop_reason in _STOP_TEXT:
            events.append(
                Event(
                    time_ns=end_ns,
                    data=PolicyDecision(
                        action="kill",
                        reason=r.stop_reason or "",
                        detail={"text": _STOP_TEXT[r.stop_reason or ""]},
                    ),
                    **env,
                )
            )
        self._emit(events)
        if self.store is not None:
            self.store.flush()

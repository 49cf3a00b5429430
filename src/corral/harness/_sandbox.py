"""The public ``Sandbox``: one per episode, composing confinement with egress, events and detection.

Per call: inspect the command (a blocked call never runs), run it in the Jail,
record the tool call, its resource use and every decision as events tagged with
the trace context, gather the runtime alerts it caused, and return a ``ToolResult``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

from corral.errors import EgressError
from corral.events import (
    Alert,
    Event,
    EventStore,
    Level,
    Payload,
    PolicyDecision,
    ResourceSample,
    ToolCall,
    TraceContext,
)
from corral.harness._harness import EventSink, Harness
from corral.policy import Policy
from corral.sandbox import (
    CallOutcome,
    Jail,
    NetworkAttachment,
    ToolResult,
    new_id,
    normalize_command,
    preflight,
)

# A call the kernel had to stop for exhausting a limit is itself a finding (fork and memory bombs).
_LIMIT_ALERTS = {
    "pids": ("corral.limit.pids", "Process-count limit hit (fork bomb)", Level.high),
    "memory": ("corral.limit.memory", "Memory limit hit (memory bomb)", Level.medium),
}

_STOP_TEXT = {
    "timeout": "wall-clock limit reached; every process of the call was killed",
    "memory": "memory limit reached; the kernel's OOM killer ended the call",
    "pids": "process-count limit reached (fork bomb?); every process of the call was killed",
    "egress_failure": "the egress proxy or resolver failed during the call",
}


class Sandbox:
    """A sandbox for one episode. Use as a context manager; ``run`` each tool call.

    Standalone (``Sandbox(policy)``) it makes a private Harness; many sandboxes of
    one process should share one (``harness.sandbox()``), so that rules are compiled
    once and one egress proxy serves them all.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        sandbox_id: str | None = None,
        store: EventStore | None = None,
        sinks: Sequence[EventSink] = (),
        host: str | None = None,
        harness: Harness | None = None,
    ) -> None:
        preflight()  # a machine that cannot confine calls says so before anything else starts
        if harness is None:
            harness = Harness(policy, store=store, sinks=sinks, host=host)
            self._own_harness = True
        else:
            self._own_harness = False
        self.harness = harness
        self.policy = policy if policy is not None else harness.policy
        self.host = harness.host
        self._network: NetworkAttachment | None = None
        sid = sandbox_id or new_id("sb")
        try:
            if self.policy.network.mode != "none":
                self._network = harness.egress().attach(sid)
            self._jail = Jail(
                self.policy, sandbox_id=sid, network=self._network, observers=harness.observers()
            )
        except BaseException:
            if self._network is not None:
                self._network.close()
            if self._own_harness:
                harness.close()
            raise
        self.id = sid
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._jail.close()  # also closes the network attachment
        finally:
            if self._own_harness:
                self.harness.close()

    @property
    def workspace(self) -> str:
        return str(self._jail.workspace)

    @property
    def uid(self) -> int:
        """The host uid this sandbox's processes run as (unique among live sandboxes)."""
        return self._jail.uid

    @property
    def sandbox_ip(self) -> str | None:
        return self._network.sandbox_ip if self._network is not None else None

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
        _argv, text = normalize_command(command)  # malformed commands fail before anything happens
        with self._lock:
            start_ns = time.time_ns()
            inspection = self.harness.detector.inspect_command(text, ctx=ctx, sandbox_id=self.id)
            self._emit_alerts(inspection.alerts, ctx, start_ns)
            if inspection.blocked:
                return self._blocked(text, ctx, start_ns, inspection.alerts)
            tcid = ctx.tool_call_id or ""
            self.harness.begin_call(tcid)
            egress_failed = False
            try:
                if self._network is not None:
                    self._check_network()
                outcome = self._jail.run(command, ctx=ctx, timeout=timeout, stdin=stdin, env=env)
                if self._network is not None:
                    egress_failed = not self._network_ok()
            finally:
                runtime = self.harness.end_call(tcid)
            limit = self._limit_alerts(outcome, ctx)
            result = self._result(outcome, _dedupe(inspection.alerts + runtime + limit), egress_failed)
            self._record(outcome, result, start_ns)
            return result

    def _limit_alerts(self, o: CallOutcome, ctx: TraceContext) -> list[Alert]:
        spec = _LIMIT_ALERTS.get(o.raw.stop_reason or "")
        if spec is None:
            return []
        rule_id, title, level = spec
        usage = o.raw.usage
        alert = Alert(
            rule_id=rule_id,
            title=title,
            level=level,
            category="resource_abuse",
            tags=["attack.impact", "attack.t1499"],
            matched={"memory_peak_bytes": usage.memory_peak_bytes, "pids_limit_hits": usage.pids_limit_hits},
        )
        self._emit_alerts([alert], ctx, time.time_ns())
        return [alert]

    def _check_network(self) -> None:
        assert self._network is not None
        self._network.check()  # raises EgressError: the call never starts without its proxy

    def _network_ok(self) -> bool:
        assert self._network is not None
        try:
            self._network.check()
        except EgressError:
            return False
        return True

    def _event(self, time_ns: int, data: Payload, ctx: TraceContext) -> Event:
        """An event of this sandbox, under the call's trace context."""
        return Event(time_ns=time_ns, data=data, host=self.host, sandbox_id=self.id, ctx=ctx)

    def _emit_alerts(self, alerts: list[Alert], ctx: TraceContext, t_ns: int) -> None:
        for a in alerts:
            self.harness.emit(self._event(t_ns, a, ctx))

    def _blocked(self, text: str, ctx: TraceContext, start_ns: int, alerts: list[Alert]) -> ToolResult:
        reason = "; ".join(f"{a.rule_id}: {a.title} ({a.level.value})" for a in alerts)
        events = [
            self._event(
                start_ns,
                ToolCall(
                    command=text, start_ns=start_ns, end_ns=start_ns, blocked=True, stop_reason="policy"
                ),
                ctx,
            ),
            self._event(
                start_ns,
                PolicyDecision(
                    action="block", reason="detection", detail={"rules": [a.rule_id for a in alerts]}
                ),
                ctx,
            ),
        ]
        self.harness.emit_many(events)
        self.harness.flush()
        return ToolResult(
            exit_code=None,
            blocked=True,
            block_reason=reason,
            stop_reason="policy",
            alerts=alerts,
            ctx=ctx,
            sandbox_id=self.id,
        )

    def _result(self, o: CallOutcome, alerts: list[Alert], egress_failed: bool) -> ToolResult:
        raw = o.raw
        stop = raw.stop_reason or ("egress_failure" if egress_failed else None)
        return ToolResult(
            exit_code=raw.exit_code,
            stdout=raw.stdout.decode("utf-8", "replace"),
            stderr=raw.stderr.decode("utf-8", "replace"),
            stdout_truncated=raw.stdout_truncated,
            stderr_truncated=raw.stderr_truncated,
            duration_s=raw.duration_s,
            stop_reason=stop,
            alerts=alerts,
            ctx=o.scope.ctx,
            sandbox_id=self.id,
            cpu_time_s=raw.usage.cpu_time_s,
            memory_peak_bytes=raw.usage.memory_peak_bytes,
        )

    def _record(self, o: CallOutcome, r: ToolResult, start_ns: int) -> None:
        end_ns = start_ns + int(r.duration_s * 1e9)
        ctx = r.ctx
        events: list[Event] = [
            self._event(
                start_ns,
                ToolCall(
                    command=o.command_text,
                    start_ns=start_ns,
                    end_ns=end_ns,
                    exit_code=r.exit_code,
                    blocked=r.blocked,
                    stop_reason=r.stop_reason,
                    sandbox_ip=self.sandbox_ip,
                    host_ip=self.host,
                ),
                ctx,
            ),
        ]
        if not self.policy.monitoring.resources:  # else the resource collector reports the final sample
            usage = o.raw.usage
            events.append(
                self._event(
                    end_ns,
                    ResourceSample(
                        cpu_time_s=usage.cpu_time_s,
                        memory_bytes=usage.memory_peak_bytes,
                        memory_peak_bytes=usage.memory_peak_bytes,
                        pids=usage.pids_current,
                        final=True,
                    ),
                    ctx,
                )
            )
        if r.stop_reason in _STOP_TEXT:
            detail = {"text": _STOP_TEXT[r.stop_reason]}
            events.append(
                self._event(end_ns, PolicyDecision(action="kill", reason=r.stop_reason, detail=detail), ctx)
            )
        self.harness.emit_many(events)
        self.harness.flush()


def _dedupe(alerts: list[Alert]) -> list[Alert]:
    """One alert per rule per call: a rule that matched the command text and then the observed
    exec is one finding, not two (penalties and counts stay exact)."""
    seen: set[str] = set()
    out: list[Alert] = []
    for a in alerts:
        if a.rule_id not in seen:
            seen.add(a.rule_id)
            out.append(a)
    return out

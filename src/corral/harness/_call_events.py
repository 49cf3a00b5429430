"""The record of a call: its ToolResult, the agent's note, and the events that go to the store.

Pure functions over a call's outcome; the sandbox emits what they return.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from corral.events import (
    Alert,
    Event,
    Level,
    Payload,
    PolicyDecision,
    ResourceSample,
    ToolCall,
    TraceContext,
    cap_output,
)
from corral.monitor import GpuCallSummary
from corral.policy import Policy
from corral.sandbox import CallOutcome, StopReason, ToolResult

# A call the kernel had to stop for exhausting a limit is itself a finding (fork and memory bombs).
_LIMIT_ALERTS = {
    "pids": ("corral.limit.pids", "Process-count limit hit (fork bomb)", Level.high),
    "memory": ("corral.limit.memory", "Memory limit hit (memory bomb)", Level.medium),
}

STOP_TEXT: dict[str, str] = {
    "timeout": "wall-clock limit reached; every process of the call was killed",
    "memory": "memory limit reached; the kernel's OOM killer ended the call",
    "pids": "process-count limit reached (fork bomb?); every process of the call was killed",
    "egress_failure": "the egress proxy or resolver failed during the call",
    "store_failure": "the event store cannot record calls; the call was not run",
    "gpu_budget": "GPU time budget exceeded; every process of the call was killed",
    "gpu_memory": "GPU memory limit exceeded; every process of the call was killed",
    "gpu_monitor_failure": "the GPU monitor (NVML) is missing or failed while the call held a GPU",
}

# What the agent reads. Neutral text names no rule: naming one teaches a policy which pattern to avoid.
_NEUTRAL_BLOCKED = "[corral] This command was not run: it is not allowed in this environment."
_STOPPED = {
    "timeout": "[corral] The command was stopped: it ran past its time limit.",
    "memory": "[corral] The command was stopped: it ran out of memory.",
    "pids": "[corral] The command was stopped: it started too many processes.",
    "egress_failure": "[corral] The network was unavailable during this command.",
    "store_failure": "[corral] This command was not run: the environment is unavailable.",
    "gpu_budget": "[corral] The command was stopped: it used more GPU time than allowed.",
    "gpu_memory": "[corral] The command was stopped: it used more GPU memory than allowed.",
    "gpu_monitor_failure": "[corral] The command was stopped: the GPU became unavailable.",
}
_NOT_RUN = {"gpu_monitor_failure": "[corral] This command was not run: the GPU is unavailable."}


def agent_message(
    policy: Policy, *, blocked: bool, stop: StopReason | None, alerts: Sequence[Alert]
) -> str | None:
    detailed = policy.response.agent_message == "detailed"
    if blocked and stop == "policy":
        if detailed and alerts:
            return "[corral] This command was not run; it matched: " + "; ".join(
                sorted({a.title for a in alerts})
            )
        return _NEUTRAL_BLOCKED
    parts = []
    if blocked and stop in _NOT_RUN:
        parts.append(_NOT_RUN[stop or ""])
    elif stop is not None and stop in _STOPPED:
        parts.append(_STOPPED[stop])
    if detailed and alerts:
        parts.append("[corral] Flagged: " + "; ".join(sorted({a.title for a in alerts})))
    return "\n".join(parts) or None


def dedupe(alerts: list[Alert]) -> list[Alert]:
    """One alert per rule per call: a rule that matched the command text and then the observed
    exec is one finding, not two (penalties and counts stay exact)."""
    seen: set[str] = set()
    out: list[Alert] = []
    for a in alerts:
        if a.rule_id not in seen:
            seen.add(a.rule_id)
            out.append(a)
    return out


def limit_alert(o: CallOutcome) -> Alert | None:
    spec = _LIMIT_ALERTS.get(o.raw.stop_reason or "")
    if spec is None:
        return None
    rule_id, title, level = spec
    usage = o.raw.usage
    return Alert(
        rule_id=rule_id,
        title=title,
        level=level,
        category="resource_abuse",
        tags=["attack.impact", "attack.t1499"],
        matched={"memory_peak_bytes": usage.memory_peak_bytes, "pids_limit_hits": usage.pids_limit_hits},
    )


class CallRecorder:
    """Builds the events of one sandbox's calls, under each call's trace context."""

    def __init__(self, policy: Policy, sandbox_id: str, host: str | None, sandbox_ip: str | None) -> None:
        self.policy = policy
        self.sandbox_id = sandbox_id
        self.host = host
        self.sandbox_ip = sandbox_ip

    def event(self, time_ns: int, data: Payload, ctx: TraceContext) -> Event:
        return Event(time_ns=time_ns, data=data, host=self.host, sandbox_id=self.sandbox_id, ctx=ctx)

    def refused(
        self, text: str, ctx: TraceContext, start_ns: int, alerts: list[Alert], stop: StopReason, reason: str
    ) -> tuple[ToolResult, list[Event]]:
        """A call that never ran: blocked by detection (``policy``) or by a dead store."""
        detail: dict[str, object] = (
            {"rules": [a.rule_id for a in alerts]} if stop == "policy" else {"text": STOP_TEXT.get(stop, "")}
        )
        events = [
            self.event(
                start_ns,
                ToolCall(command=text, start_ns=start_ns, end_ns=start_ns, blocked=True, stop_reason=stop),
                ctx,
            ),
            self.event(
                start_ns,
                PolicyDecision(
                    action="block", reason="detection" if stop == "policy" else stop, detail=detail
                ),
                ctx,
            ),
        ]
        result = ToolResult(
            exit_code=None,
            blocked=True,
            block_reason=reason,
            stop_reason=stop,
            agent_message=agent_message(self.policy, blocked=True, stop=stop, alerts=alerts),
            alerts=alerts,
            ctx=ctx,
            sandbox_id=self.sandbox_id,
        )
        return result, events

    def result(
        self, o: CallOutcome, alerts: list[Alert], egress_failed: bool, gpu: GpuCallSummary | None = None
    ) -> ToolResult:
        """``gpu``: the call's GPU record when the GPU monitor followed it (its stop reason is the GPU
        limit the call broke: the kernel saw only a kill)."""
        raw = o.raw
        stop: StopReason | None = (
            raw.stop_reason
            or (gpu.stop_reason if gpu is not None else None)
            or ("egress_failure" if egress_failed else None)
        )
        return ToolResult(
            exit_code=raw.exit_code,
            stdout=raw.stdout.decode("utf-8", "replace"),
            stderr=raw.stderr.decode("utf-8", "replace"),
            stdout_bytes=raw.stdout,
            stderr_bytes=raw.stderr,
            stdout_truncated=raw.stdout_truncated,
            stderr_truncated=raw.stderr_truncated,
            duration_s=raw.duration_s,
            stop_reason=stop,
            agent_message=agent_message(self.policy, blocked=False, stop=stop, alerts=alerts),
            alerts=alerts,
            ctx=o.scope.ctx,
            sandbox_id=self.sandbox_id,
            cpu_time_s=raw.usage.cpu_time_s,
            memory_peak_bytes=raw.usage.memory_peak_bytes,
            gpu_time_s=gpu.gpu_time_s if gpu is not None else None,
            gpu_memory_peak_bytes=gpu.memory_peak_bytes if gpu is not None else None,
        )

    def ran(self, o: CallOutcome, r: ToolResult, start_ns: int) -> list[Event]:
        end_ns = start_ns + int(r.duration_s * 1e9)
        ctx = r.ctx
        out, out_cut = cap_output(o.raw.stdout)
        err, err_cut = cap_output(o.raw.stderr)
        events: list[Event] = [
            self.event(
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
                    # what the call printed, so an analyst can drill from an alert to its output
                    stdout=out,
                    stderr=err,
                    stdout_truncated=out_cut or r.stdout_truncated,
                    stderr_truncated=err_cut or r.stderr_truncated,
                    gpu_time_s=r.gpu_time_s,
                    gpu_memory_peak_bytes=r.gpu_memory_peak_bytes,
                ),
                ctx,
            ),
        ]
        if not self.policy.monitoring.resources:  # else the resource collector reports the final sample
            usage = o.raw.usage
            events.append(
                self.event(
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
        if r.stop_reason in STOP_TEXT:
            detail = {"text": STOP_TEXT[r.stop_reason or ""]}
            events.append(
                self.event(
                    end_ns, PolicyDecision(action="kill", reason=r.stop_reason or "", detail=detail), ctx
                )
            )
        return events


def now() -> int:
    return time.time_ns()

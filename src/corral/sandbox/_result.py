"""What a tool call returns to the RL framework."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from corral.events import Alert, TraceContext

STOP_REASONS = ("timeout", "memory", "pids", "policy", "egress_failure")


class ToolResult(BaseModel):
    """The outcome of one sandboxed tool call.

    ``stop_reason`` says why Corral ended the call early (``timeout``, ``memory``,
    ``pids``, ``policy``, ``egress_failure``); it is None when the command ended on
    its own. ``blocked`` is True when policy stopped the call before it ran.
    """

    model_config = ConfigDict(frozen=True)

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_s: float = 0.0
    stop_reason: str | None = None
    blocked: bool = False
    block_reason: str | None = None
    alerts: list[Alert] = Field(default_factory=list)
    ctx: TraceContext
    sandbox_id: str
    cpu_time_s: float | None = None
    memory_peak_bytes: int | None = None

    @property
    def tool_call_id(self) -> str | None:
        return self.ctx.tool_call_id

    @property
    def run_id(self) -> str | None:
        return self.ctx.run_id

    def to_json_dict(self) -> dict[str, Any]:
        """Flat JSON form used by ``corral run --json``: trace fields at the top level."""
        d = self.model_dump(mode="json", exclude={"ctx"})
        d.update(self.ctx.model_dump(mode="json"))
        return d

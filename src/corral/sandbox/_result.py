"""What a tool call returns to the RL framework."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from corral.events import Alert, TraceContext

StopReason = Literal[
    "timeout",
    "memory",
    "pids",
    "policy",
    "egress_failure",
    "store_failure",
    "gpu_budget",
    "gpu_memory",
    "gpu_monitor_failure",
]
STOP_REASONS: tuple[str, ...] = get_args(StopReason)


class ToolResult(BaseModel):
    """The outcome of one sandboxed tool call.

    ``stop_reason`` says why Corral ended the call early; it is None when the
    command ended on its own. ``blocked`` is True when policy stopped the call
    before it ran. ``stdout``/``stderr`` are the output decoded as UTF-8 (bad
    bytes replaced); ``stdout_bytes``/``stderr_bytes`` keep it exactly.
    ``agent_message`` is Corral's note for the agent (never naming a rule unless
    the policy asks for detail); ``observation`` is what an agent should be shown.
    """

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_s: float = 0.0
    stop_reason: StopReason | None = None
    blocked: bool = False
    block_reason: str | None = None
    agent_message: str | None = None
    alerts: list[Alert] = Field(default_factory=list)
    ctx: TraceContext
    sandbox_id: str
    cpu_time_s: float | None = None
    memory_peak_bytes: int | None = None
    gpu_time_s: float | None = None  # only for a sandbox with a GPU grant: seconds of full SM use
    gpu_memory_peak_bytes: int | None = None

    @property
    def tool_call_id(self) -> str | None:
        return self.ctx.tool_call_id

    @property
    def run_id(self) -> str | None:
        return self.ctx.run_id

    @property
    def observation(self) -> str:
        """The text to give the agent: its output, and Corral's note when there is one."""
        text = self.stdout + (("\n" + self.stderr) if self.stderr else "")
        if self.agent_message:
            text = (text + "\n" if text else "") + self.agent_message
        return text

    def to_json_dict(self) -> dict[str, Any]:
        """Flat JSON form used by ``corral run --json``: trace fields at the top level (no raw bytes)."""
        d = self.model_dump(mode="json", exclude={"ctx", "stdout_bytes", "stderr_bytes"})
        d.update(self.ctx.model_dump(mode="json"))
        return d

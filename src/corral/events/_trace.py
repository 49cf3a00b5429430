"""The RL trace context every event carries, and the generic trace record."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TraceContext(BaseModel):
    """Where in training a tool call happened: run, step, episode, turn, tool call.

    Every field is optional so that a harness can tag what it knows; the sandbox
    fills ``tool_call_id`` when the caller leaves it empty.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    run_id: str | None = None
    step: int | None = Field(default=None, ge=0)
    episode_id: str | None = None
    turn: int | None = Field(default=None, ge=0)
    tool_call_id: str | None = None

    def with_tool_call(self, tool_call_id: str) -> TraceContext:
        return self.model_copy(update={"tool_call_id": tool_call_id})


class TraceRecord(BaseModel):
    """One tool call in the generic trace format (contract in DESIGN.md).

    ``start``/``end`` are epoch seconds (float); readers accept RFC 3339 too and
    convert. ``host`` is the node's address as the network sees it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    run_id: str | None = None
    step: int | None = None
    episode_id: str | None = None
    turn: int | None = None
    tool_call_id: str
    sandbox_id: str | None = None
    host: str | None = None
    sandbox_ip: str | None = None
    start: float
    end: float
    command: str = ""

"""Wire types of the node service (its OpenAPI schema is generated from these)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from corral.events import TraceContext
from corral.sandbox import ToolResult

SANDBOX_ID = r"^[A-Za-z0-9_.-]{1,64}$"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateSandbox(_Wire):
    policy: str = Field(default="default", description="Name of a policy the service was started with.")
    sandbox_id: str | None = Field(default=None, pattern=SANDBOX_ID)
    image: str | None = Field(
        default=None,
        description="Image reference (dir:, oci:, docker-archive:, docker://); it must be in the "
        "policy's environment.images_allowed. Default: the policy's environment.image.",
    )
    lease_s: float | None = Field(
        default=None, gt=0, le=86400, description="Reaped when no call or heartbeat comes for this long."
    )
    owner: str | None = Field(default=None, max_length=200, description="Free text: who holds it.")


class SandboxInfo(_Wire):
    id: str
    policy: str
    host: str
    lease_s: float
    owner: str | None = None
    calls: int = 0
    idle_s: float = 0.0


class RunCall(_Wire):
    command: str | list[str]
    ctx: TraceContext | None = None
    timeout: float | None = Field(default=None, gt=0)
    stdin_b64: str | None = None
    env: dict[str, str] | None = None


class Heartbeat(_Wire):
    ids: list[str] = Field(max_length=100_000, description="Sandboxes whose leases to renew.")


class HeartbeatReply(_Wire):
    unknown: list[str] = Field(description="Ids the service does not hold (destroyed or reaped).")


class Health(_Wire):
    status: str
    version: str
    sandboxes: int
    policies: list[str]
    store_pending: int


class ErrorBody(_Wire):
    error: str
    detail: str
    result: ToolResult | None = Field(
        default=None, description="For a StoreError: the refused call's result, as the trainer would see it."
    )


class StreamChunk(_Wire):
    """Output of the running call, as produced (``data`` in base64)."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    type: Literal["chunk"] = "chunk"
    stream: Literal["stdout", "stderr"]
    data: bytes


class StreamResult(_Wire):
    """The last line of a stream that ended normally."""

    type: Literal["result"] = "result"
    result: ToolResult


class StreamError(_Wire):
    """The last line of a stream that the harness could not finish (the status was already 200)."""

    type: Literal["error"] = "error"
    error: str
    detail: str
    result: ToolResult | None = None


StreamLine = Annotated[StreamChunk | StreamResult | StreamError, Field(discriminator="type")]
STREAM_LINE: TypeAdapter[StreamChunk | StreamResult | StreamError] = TypeAdapter(StreamLine)

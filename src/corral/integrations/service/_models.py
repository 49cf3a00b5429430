"""Wire types of the node service (its OpenAPI schema is generated from these)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from corral.events import TraceContext


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateSandbox(_Wire):
    policy: str = Field(default="default", description="Name of a policy the service was started with.")
    sandbox_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
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


class Health(_Wire):
    status: str
    version: str
    sandboxes: int
    policies: list[str]
    store_pending: int


class ErrorBody(_Wire):
    error: str
    detail: str

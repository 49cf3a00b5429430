"""Typed events with one envelope.

Process and network payloads use Sigma taxonomy field names (``Image``,
``CommandLine``, ``DestinationIp`` ...) so Sigma rules apply to them unchanged.
``Event.flat()`` gives the dict that rules, exporters and ``corral events
--json`` see: envelope fields plus the payload's own fields.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from corral.events._timefmt import rfc3339_ns
from corral.events._trace import TraceContext


class Level(StrEnum):
    """Sigma severity levels, lowest first."""

    informational = "informational"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]


_LEVEL_RANK = {lv: i for i, lv in enumerate(Level)}


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class ProcessStart(_Payload):
    kind: Literal["process_start"] = "process_start"
    ProcessId: int
    ParentProcessId: int | None = None
    Image: str
    CommandLine: str
    argv: list[str] = Field(default_factory=list)
    ParentImage: str | None = None
    ParentCommandLine: str | None = None
    User: str | None = None
    CurrentDirectory: str | None = None
    argv_truncated: bool = False  # the collector could not read every argument in full


class ProcessExit(_Payload):
    kind: Literal["process_exit"] = "process_exit"
    ProcessId: int
    Image: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    cpu_time_s: float | None = None


Decision = Literal["allowed", "denied"]


class NetworkConnection(_Payload):
    """An outbound attempt seen by the egress layer (proxy, nftables or DNS)."""

    kind: Literal["network_connection"] = "network_connection"
    Protocol: str
    DestinationIp: str | None = None
    DestinationPort: int | None = None
    DestinationHostname: str | None = None
    SourceIp: str | None = None
    SourcePort: int | None = None
    Initiated: bool = True
    decision: Decision
    rule: str | None = None
    layer: Literal["proxy", "nftables", "dns", "socket"] = "proxy"
    proxy_protocol: str | None = None  # http-connect, http, socks5 (proxy layer only)
    User: str | None = None  # uid of the sending process when the kernel reports it (nftables layer)
    bytes_sent: int = 0
    bytes_received: int = 0
    # The 5-tuple the proxy used on the outside, so outside logs can be matched exactly.
    outside_src_ip: str | None = None
    outside_src_port: int | None = None
    outside_dst_ip: str | None = None
    outside_dst_port: int | None = None
    # A protocol recognised on an allowed proxied flow (ssh, stratum, tls-tunnel), from its bytes, not
    # from any command text; the detail says which direction and what was seen.
    fingerprint: str | None = None
    fingerprint_detail: str | None = None


class DnsQuery(_Payload):
    kind: Literal["dns_query"] = "dns_query"
    QueryName: str
    QueryType: str = "A"
    decision: Decision
    rule: str | None = None
    answers: list[str] = Field(default_factory=list)


class ResourceSample(_Payload):
    kind: Literal["resource"] = "resource"
    cpu_time_s: float
    memory_bytes: int
    memory_peak_bytes: int | None = None
    pids: int
    final: bool = False  # the per-call summary rather than a sample of a long call


class FileDenied(_Payload):
    kind: Literal["file_denied"] = "file_denied"
    TargetFilename: str
    operation: str
    Image: str | None = None


class PolicyDecision(_Payload):
    """Something the harness decided: a call blocked, a process killed, a penalty."""

    kind: Literal["policy_decision"] = "policy_decision"
    action: str
    reason: str
    detail: dict[str, Any] = Field(default_factory=dict)


OUTPUT_CAP_BYTES = 64 * 1024
"""The most of one output stream (stdout or stderr) a ``ToolCall`` event keeps, in UTF-8 bytes."""


def cap_output(text: str | bytes | None, cap_bytes: int = OUTPUT_CAP_BYTES) -> tuple[str | None, bool]:
    """``(text, truncated)``: at most ``cap_bytes`` of UTF-8, cut on a character boundary.

    Bytes are decoded as UTF-8 with replacement characters, so any captured output can be stored.
    """
    if text is None:
        return None, False
    if isinstance(text, str):
        if len(text) * 4 <= cap_bytes:  # cannot be over the cap: skip encoding it
            return text, False
        data = text.encode("utf-8", "surrogatepass")
    else:
        data = text
    if len(data) <= cap_bytes:
        return (text if isinstance(text, str) else data.decode("utf-8", "replace")), False
    # "ignore" drops the partial character left at the cut.
    return data[:cap_bytes].decode("utf-8", "ignore"), True


class ToolCall(_Payload):
    """One tool call, start to end; also the source of Corral's trace records.

    ``stdout``/``stderr`` are the call's captured output, at most ``OUTPUT_CAP_BYTES`` each; a
    longer stream is cut there and its ``*_truncated`` flag set. The model enforces the cap, so
    a producer that passes more gets it cut rather than a store row of unbounded size.
    ``trusted`` marks the environment's own runs in the sandbox (a grader), not the agent's calls;
    reports show them apart.
    """

    kind: Literal["tool_call"] = "tool_call"
    command: str
    start_ns: int
    end_ns: int | None = None
    exit_code: int | None = None
    blocked: bool = False
    stop_reason: str | None = None
    sandbox_ip: str | None = None
    host_ip: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    gpu_time_s: float | None = None  # calls of a sandbox with a GPU grant (NVML accounting)
    gpu_memory_peak_bytes: int | None = None
    trusted: bool = False

    @model_validator(mode="before")
    @classmethod
    def _cap_streams(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for stream in ("stdout", "stderr"):
            value = data.get(stream)
            if isinstance(value, str | bytes):
                capped, cut = cap_output(value)
                if cut or isinstance(value, bytes):
                    data = {**data, stream: capped}
                if cut:
                    data[f"{stream}_truncated"] = True
        return data


class FileTransfer(_Payload):
    """Files the trainer put into or took out of a sandbox: the harness's act, not the agent's."""

    kind: Literal["file_transfer"] = "file_transfer"
    direction: Literal["in", "out"]
    TargetFilename: str  # as the sandbox sees it
    operation: Literal["write_file", "read_file", "upload", "download"]
    files: int = 1
    bytes: int = 0
    sha256: str | None = None  # of a single file's content
    skipped: int = 0  # entries not transferred (symlinks and special files on the way out)


class Alert(_Payload):
    kind: Literal["alert"] = "alert"
    rule_id: str
    title: str
    level: Level
    category: str
    tags: list[str] = Field(default_factory=list)
    matched: dict[str, Any] = Field(default_factory=dict)
    source_seq: int | None = None  # seq of the event that raised it, when from the store


class GpuUsage(_Payload):
    """One process seen on a GPU at one poll (NVML), with the call it belongs to in the envelope."""

    kind: Literal["gpu"] = "gpu"
    gpu_index: int
    ProcessId: int
    used_memory_bytes: int | None = None
    sm_util_pct: float | None = None
    declared: bool = False  # the declared training workload, or a sandbox on a GPU it was granted
    Image: str | None = None
    CommandLine: str | None = None
    gpu_instance_id: int | None = None  # MIG instance, when NVML reports one
    compute_instance_id: int | None = None


class Health(_Payload):
    """A component's state changed: a collector fell behind, a proxy died, a rule failed."""

    kind: Literal["health"] = "health"
    component: str
    status: Literal["ok", "degraded", "failed", "backpressure"]
    message: str = ""
    count: int = 0


Payload = Annotated[
    ProcessStart
    | ProcessExit
    | NetworkConnection
    | DnsQuery
    | ResourceSample
    | FileDenied
    | PolicyDecision
    | ToolCall
    | FileTransfer
    | Alert
    | GpuUsage
    | Health,
    Field(discriminator="kind"),
]

EVENT_TYPES: tuple[str, ...] = (
    "process_start",
    "process_exit",
    "network_connection",
    "dns_query",
    "resource",
    "file_denied",
    "policy_decision",
    "tool_call",
    "file_transfer",
    "alert",
    "gpu",
    "health",
)


def now_ns() -> int:
    return time.time_ns()


class Event(BaseModel):
    """The common envelope: when, where, under which trace context, and what."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    time_ns: int = Field(default_factory=now_ns)
    host: str | None = None
    sandbox_id: str | None = None
    ctx: TraceContext = Field(default_factory=TraceContext)
    seq: int | None = None  # assigned by the store on append
    data: Payload

    @property
    def type(self) -> str:
        return self.data.kind

    def envelope(self) -> dict[str, Any]:
        """The common fields of every event: type, time, where, and the RL trace context."""
        ctx = self.ctx
        return {
            "type": self.data.kind,
            "time_ns": self.time_ns,
            "seq": self.seq,
            "host": self.host,
            "sandbox_id": self.sandbox_id,
            "run_id": ctx.run_id,
            "step": ctx.step,
            "episode_id": ctx.episode_id,
            "turn": ctx.turn,
            "tool_call_id": ctx.tool_call_id,
        }

    def record(self) -> dict[str, Any]:
        """Payload and envelope as Python values, without JSON serialisation (detection's hot path)."""
        rec = {k: v for k, v in self.data.__dict__.items() if k != "kind"}
        rec.update(self.envelope())
        return rec

    def flat(self) -> dict[str, Any]:
        """Envelope and payload as one flat JSON-ready dict (Sigma field names for payloads)."""
        env = self.envelope()
        out: dict[str, Any] = {"type": env.pop("type"), "time": rfc3339_ns(self.time_ns), **env}
        for k, v in self.data.model_dump(mode="json").items():
            if k != "kind":
                out[k] = v
        return out

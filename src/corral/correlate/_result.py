"""Typed results of a correlation: attributions, unattributed records, incidents, statistics."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from corral.events import TraceRecord


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LogRecordOut(_Frozen):
    """A log record as reported: where it is in which file, and what it says."""

    log_file: str
    log_line: int
    format: str
    kind: str
    time: float | None
    end: float | None
    src_ip: str | None
    src_port: int | None
    dst_ip: str | None
    dst_port: int | None
    proto: str | None
    action: str | None
    signature: str | None
    severity: str | None
    reporter: str | None
    detail: str | None
    workload: str | None


class Attribution(LogRecordOut):
    """A log record tied to the tool calls that can have caused it.

    ``tool_call_id`` (and ``turn``) are set only when exactly one call fits;
    ``run_id``/``episode_id`` only when every candidate is in one episode;
    ``candidates`` lists the calls that could not be told apart (first 50, by
    start time) and ``candidate_count`` how many there were.
    """

    run_id: str | None
    episode_id: str | None
    step: int | None
    turn: int | None
    tool_call_id: str | None
    method: str
    confidence: float
    candidates: list[str]
    candidate_count: int
    episode_count: int
    remote_ip: str | None
    remote_port: int | None
    evidence: str

    @property
    def ambiguous(self) -> bool:
        return self.candidate_count > 1


class Destination(_Frozen):
    ip: str | None
    port: int | None
    proto: str | None
    count: int
    actions: list[str]
    signatures: list[str]


class CorralAlertOut(_Frozen):
    time: float
    rule_id: str
    title: str
    level: str
    tool_call_id: str | None
    step: int | None
    turn: int | None


class Incident(_Frozen):
    """Attributed records (and Corral's own alerts) of one run and episode.

    When the evidence cannot separate episodes, the incident is ``ambiguous``
    and ``candidate_episodes`` names them; it is never folded into one of them.
    """

    id: str
    run_id: str | None
    episode_id: str | None
    ambiguous: bool
    candidate_episodes: list[str]
    severity: str
    first_time: float | None
    last_time: float | None
    steps: list[int]
    record_count: int
    actions: dict[str, int]
    methods: dict[str, int]
    min_confidence: float
    destinations: list[Destination]
    first_tool_call_id: str | None
    first_command: str | None
    tool_call_ids: list[str]
    alerts: list[CorralAlertOut] = Field(default_factory=list)
    attribution_indexes: list[int] = Field(default_factory=list)


class SampleOut(_Frozen):
    line: int
    text: str
    reason: str


class FileStatsOut(_Frozen):
    file: str
    format: str
    records: int
    malformed: int
    samples: list[SampleOut]


class CorrelationReport(_Frozen):
    """The whole result as exported (JSON contract of ``corral correlate --json``)."""

    generated_at: float
    skew_s: float
    logs: list[FileStatsOut]
    traces: list[FileStatsOut]
    tool_calls: int
    records: int
    attributed: int
    attributions: list[Attribution]
    unattributed: list[LogRecordOut]
    incidents: list[Incident]
    calls: dict[str, TraceRecord]

    def to_jsonable(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

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
    ``episode_id`` only when every candidate is in one episode, ``run_id`` when
    every candidate is in one run; ``candidates`` lists the calls that could not
    be told apart (first 50, by start time; live, in the order the calls became
    known) and ``candidate_count`` how many there were. ``timing`` says where the
    record fell against the chosen calls (``inside`` their interval, within the
    clock ``skew`` allowance, or ``after`` they ended); ``tie_break`` names the
    rule that chose among candidates of the same method and ``ruled_out`` how
    many it set aside; ``continues`` is the ``file:line`` of the earlier record
    of the same flow a continuation follows. ``evidence`` says all of it in words.
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
    timing: str | None = None
    tie_break: str | None = None
    ruled_out: int = 0
    continues: str | None = None

    @property
    def ambiguous(self) -> bool:
        return self.candidate_count > 1


class CorralAlertOut(_Frozen):
    time: float
    rule_id: str
    title: str
    level: str
    tool_call_id: str | None
    step: int | None
    turn: int | None


class Destination(_Frozen):
    ip: str | None
    port: int | None
    proto: str | None
    count: int
    actions: list[str]
    signatures: list[str]


class CallOut(TraceRecord):
    """A tool call as reported: the generic record plus what its source says about its outcome.

    ``blocked`` is None when the source does not say (generic trace files may
    not); ``trusted`` marks the environment's own runs (a grader), which are
    shown apart and not counted as the agent's calls; ``alerts`` are Corral's own
    detections on this call (event store only).
    """

    source: str | None = None
    blocked: bool | None = None
    exit_code: int | None = None
    stop_reason: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    trusted: bool = False
    alerts: list[CorralAlertOut] = Field(default_factory=list)

    @property
    def status(self) -> str:
        """'blocked', 'ran' or 'unknown'."""
        return "unknown" if self.blocked is None else "blocked" if self.blocked else "ran"


class Incident(_Frozen):
    """Attributed records (and Corral's own alerts) of one run and episode.

    When the evidence cannot separate episodes, the incident is ``ambiguous``
    and ``candidate_episodes`` names them; it is never folded into one of them.
    A record whose candidates span episodes but include a call of exactly one
    certain incident is listed there under ``shared_attribution_indexes``
    (shown, not counted), so a guilty call never makes a second, ambiguous
    incident. ``severity`` comes from the infrastructure records (from Corral's
    alerts only when there are none), so it is the same whether the calls came
    from a trace file or the event store; ``alert_level`` is the highest level
    of Corral's own alerts, which only the event store holds.
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
    shared_attribution_indexes: list[int] = Field(default_factory=list)
    alert_level: str | None = None
    calls_blocked: int = 0
    calls_ran: int = 0
    calls_unknown: int = 0
    episode_ref: str | None = None  # id of the episode's section in ``CorrelationReport.episodes``


class EpisodeOut(_Frozen):
    """One episode an incident names: all its calls in order (the agent's, then trusted runs)."""

    id: str
    run_id: str | None
    episode_id: str | None
    call_ids: list[str]
    trusted_call_ids: list[str]
    incident_ids: list[str]
    violations: int
    alerts: int


class ReportSummary(_Frozen):
    """The counts every view shows (terminal, HTML, JSON), computed once so that they agree."""

    records: int
    attributed: int
    ambiguous: int
    unattributed: int
    violations: int
    malformed_lines: int
    ignored_lines: int
    agent_calls: int
    trusted_calls: int
    calls_blocked: int
    incidents: int
    incidents_ambiguous: int
    call_sources: list[str]


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
    ignored: int = 0
    reasons: dict[str, int] = Field(default_factory=dict)


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
    calls: dict[str, CallOut]
    summary: ReportSummary | None = None
    episodes: list[EpisodeOut] = Field(default_factory=list)

    def to_jsonable(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

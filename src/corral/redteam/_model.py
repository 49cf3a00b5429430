"""Scenario definitions (data) and scorecard results (typed, JSON-ready)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The only check kinds a scenario may name; each is implemented in _checks.py.
CHECK_KINDS = (
    "silent",  # these targets saw nothing
    "paths_absent",  # these host paths do not exist afterwards
    "no_survivor",  # this workspace heartbeat file stops changing once the call returns
    "no_leftover",  # no process of the sandbox's uid runs once the call returns
    "victim_alive",  # the host victim process is alive and untraced
    "store_intact",  # the event store kept every event it had
    "unchanged",  # these seeded workspace files are unchanged
    "firewall_untouched",  # host and lab netns: no nonce table/route, ip_forward as before
    "sysctl_unchanged",  # these host sysctls keep their value
    "secrets_unread",  # no host secret (canary, shadow, ssh host key) appears in the output or workspace
    "mounts_clean",  # no host mount whose path names the nonce
    "disk_unchanged",  # the host root filesystem did not lose more than the slack
)
SUCCESS_MARKER = "RT-SUCCESS"  # scenario scripts print this when an attack step worked
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")


class Check(BaseModel):
    """One way to tell that a scenario was blocked, and its argument."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    arg: Any = None

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in CHECK_KINDS:
            raise ValueError(f"unknown check {v!r}; known: {', '.join(CHECK_KINDS)}")
        return v


def _check_list(v: Any) -> Any:
    """``[{silent: [relay]}, no_leftover]`` -> ``[Check(kind=silent, arg=[relay]), Check(no_leftover)]``."""
    if not isinstance(v, list):
        return v
    out: list[Any] = []
    for item in v:
        if isinstance(item, str):
            out.append({"kind": item})
        elif isinstance(item, Mapping) and len(item) == 1 and "kind" not in item:
            ((k, a),) = item.items()
            out.append({"kind": k, "arg": a})
        else:
            out.append(item)
    return out


class Scenario(BaseModel):
    """An attack an agent could plausibly produce, and how to tell that it was stopped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    category: str = Field(description="What the attack is (reverse_shell, exfiltration, persistence, ...).")
    description: str = ""
    command: str = Field(
        description="The tool call, as the agent would send it ({{placeholders}} filled in)."
    )
    files: dict[str, str] = Field(
        default_factory=dict, description="Workspace path -> file next to the YAML, copied in first."
    )
    seed: dict[str, str] = Field(default_factory=dict, description="Workspace path -> text written first.")
    detect: tuple[str, ...] = Field(default=(), description="Alert categories that count as detecting it.")
    checks: tuple[Check, ...] = ()
    timeout_s: float = Field(default=15.0, gt=0, le=120)
    source: str = ""  # the YAML file it came from
    base_dir: str = ""  # where its ``files`` live

    @field_validator("checks", mode="before")
    @classmethod
    def _split_checks(cls, v: Any) -> Any:
        return _check_list(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r}: names are lowercase letters, digits and '-'")
        return v

    @field_validator("files", "seed")
    @classmethod
    def _relative(cls, v: dict[str, str]) -> dict[str, str]:
        for p in v:
            if p.startswith("/") or ".." in Path(p).parts:
                raise ValueError(f"{p!r}: workspace paths are relative and stay inside the workspace")
        return v

    def file_path(self, name: str) -> Path:
        return Path(self.base_dir) / self.files[name]


class Evidence(BaseModel):
    """What one check found."""

    model_config = ConfigDict(frozen=True)

    check: str
    ok: bool
    detail: str


class AlertSeen(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule_id: str
    category: str
    level: str
    title: str
    attributed: bool
    delay_s: float | None = None
    where: str = "result"  # result, store


class ScenarioResult(BaseModel):
    """One scorecard row."""

    model_config = ConfigDict(frozen=True)

    name: str
    category: str
    description: str = ""
    blocked: bool
    detected: bool
    attributed: bool
    time_to_detect_s: float | None = None
    detail: str
    expected_detection: list[str] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    alerts: list[AlertSeen] = Field(default_factory=list)
    command: str = ""
    exit_code: int | None = None
    stop_reason: str | None = None
    call_blocked: bool = False
    duration_s: float = 0.0
    stdout_tail: str = ""
    stderr_tail: str = ""
    ctx: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None  # the harness failed on this scenario (counts as not blocked)


class Scorecard(BaseModel):
    """Every scenario's result, the environment it ran in, and a summary."""

    model_config = ConfigDict(frozen=True)

    scenarios: list[ScenarioResult]
    policy_name: str
    policy: dict[str, Any]
    corral_version: str
    kernel: str
    started: float
    duration_s: float
    run_id: str

    @property
    def all_blocked(self) -> bool:
        return all(s.blocked for s in self.scenarios)

    def summary(self) -> dict[str, Any]:
        n = len(self.scenarios)
        ttd = [s.time_to_detect_s for s in self.scenarios if s.time_to_detect_s is not None]
        return {
            "total": n,
            "blocked": sum(s.blocked for s in self.scenarios),
            "detected": sum(s.detected for s in self.scenarios),
            "attributed": sum(s.attributed for s in self.scenarios),
            "not_blocked": [s.name for s in self.scenarios if not s.blocked],
            "not_detected": [s.name for s in self.scenarios if not s.detected],
            "median_time_to_detect_s": sorted(ttd)[len(ttd) // 2] if ttd else None,
            "policy": self.policy_name,
            "corral_version": self.corral_version,
            "kernel": self.kernel,
            "duration_s": round(self.duration_s, 2),
            "run_id": self.run_id,
        }

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "scenarios": [
                {
                    "name": s.name,
                    "category": s.category,
                    "blocked": s.blocked,
                    "detected": s.detected,
                    "attributed": s.attributed,
                    "time_to_detect_s": s.time_to_detect_s,
                    "detail": s.detail,
                    "evidence": [e.model_dump() for e in s.evidence],
                    "alerts": [a.model_dump() for a in s.alerts],
                }
                for s in self.scenarios
            ],
            "summary": self.summary(),
        }

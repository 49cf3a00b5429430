"""Typed results of detection: rule metadata, the load report, and a tool call's inspection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from corral.events import Alert, Level
from corral.policy import Action

Verdict = Literal["allow", "alert", "block"]

# Log sources Corral evaluates, and the Corral event type that feeds each at runtime.
LOGSOURCES = ("process_creation", "network_connection", "dns_query", "tool_call", "file_event")
EVENT_LOGSOURCE = {
    "process_start": "process_creation",
    "network_connection": "network_connection",
    "dns_query": "dns_query",
}


@dataclass(frozen=True)
class RuleInfo:
    """What an alert needs to know about the rule that raised it."""

    id: str
    title: str
    level: Level
    category: str
    tags: tuple[str, ...]
    logsource: str  # one of LOGSOURCES, or "correlation"
    path: str
    status: str | None = None
    description: str = ""
    falsepositives: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()  # fields the rule looks at, copied into Alert.matched
    generate: bool = True  # False: only feeds correlation rules, raises no alert itself
    tests: dict[str, list[Any]] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RuleProblem:
    """A rule Corral did not load: where it is and why."""

    path: str
    rule_id: str | None
    title: str | None
    reason: str
    kind: Literal["unsupported", "invalid"] = "unsupported"
    line: int | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        name = self.title or self.rule_id or "<rule>"
        if self.title and self.rule_id and self.rule_id != self.title:
            name = f"{self.title} ({self.rule_id})"
        return f"{where}: {name}: {self.kind}: {self.reason}"


@dataclass
class LoadReport:
    """Every rule file read: how many rules loaded, and each rule skipped with its reason."""

    loaded: int = 0
    files: int = 0
    problems: list[RuleProblem] = field(default_factory=list)

    @property
    def unsupported(self) -> list[RuleProblem]:
        return [p for p in self.problems if p.kind == "unsupported"]

    @property
    def invalid(self) -> list[RuleProblem]:
        return [p for p in self.problems if p.kind == "invalid"]

    def summary(self) -> str:
        lines = [f"{self.loaded} rules loaded from {self.files} files; {len(self.problems)} not loaded"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


@dataclass(frozen=True)
class Inspection:
    """The verdict on one tool call before it runs."""

    verdict: Verdict
    level: Level | None
    alerts: list[Alert]
    rules: list[str]

    @property
    def blocked(self) -> bool:
        return self.verdict == "block"


def verdict_for(level: Level | None, section: Any) -> Action:
    """What the policy's detection section says an alert of ``level`` does (``allow`` when no alert)."""
    if level is None or not section.enabled:
        return "allow"
    action: Action = section.actions.get(level.value, "block")  # a level the policy forgot: fail closed
    return action

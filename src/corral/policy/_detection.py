"""Policy section for detection: which rules run, what each alert level does, and user overrides.

Users tune the built-in rules here instead of editing them: turn a rule off,
change its level, or add exceptions (Sigma selections; when one matches the
event, the rule does not fire).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from corral.policy._base import Section

Action = Literal["allow", "alert", "block"]
LevelName = Literal["informational", "low", "medium", "high", "critical"]
Maturity = Literal["stable", "test", "experimental"]


class DetectionSection(Section):
    enabled: bool = True
    actions: dict[LevelName, Action] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "informational": "allow",
            "low": "alert",
            "medium": "alert",
            "high": "block",
            "critical": "block",
        },
        description="What an alert of each level does to its tool call.",
    )
    builtin_maturity: tuple[Maturity, ...] = Field(
        default=("stable", "test"),
        description="Which maturity folders of the built-in rule pack to load. Empty: no built-in rules.",
    )
    rule_paths: tuple[str, ...] = Field(
        default=(),
        description="Extra Sigma rule files or folders (*.yml, *.yaml) loaded after the built-in pack.",
    )
    disabled_rules: tuple[str, ...] = Field(default=(), description="Rule ids that never fire.")
    level_overrides: dict[str, LevelName] = Field(
        default_factory=dict, description="Rule id -> level to use."
    )
    on_rule_error: Literal["error", "warn"] = Field(
        default="error",
        description="A rule or override that cannot be loaded stops the policy (error). 'warn' only lets "
        "problems in the built-in pack's test rules be reported and skipped; any other problem is an error.",
    )
    exceptions: dict[str, tuple[dict[str, Any], ...]] = Field(
        default_factory=dict,
        description="Rule id -> Sigma selections (field|modifier: value); the rule does not fire on an "
        "event that any of them matches, e.g. {'<id>': [{'CommandLine|contains': 'ssh -L 8888:localhost'}]}",
    )

    @field_validator("actions")
    @classmethod
    def _all_levels(cls, v: dict[str, Action]) -> dict[str, Action]:
        missing = {"informational", "low", "medium", "high", "critical"} - set(v)
        if missing:
            raise ValueError(f"actions must name every level; missing {sorted(missing)}")
        return v

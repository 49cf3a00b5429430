"""Policy section mapping alert levels to what happens to the tool call."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from corral.policy._base import Section

Action = Literal["allow", "alert", "block"]


class DetectionSection(Section):
    enabled: bool = True
    actions: dict[Literal["informational", "low", "medium", "high", "critical"], Action] = Field(
        default_factory=lambda: {
            "informational": "allow",
            "low": "alert",
            "medium": "alert",
            "high": "block",
            "critical": "block",
        },
        description="What an alert of each level does to its tool call.",
    )

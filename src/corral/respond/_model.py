"""What the responder decides for one tool call, and the per-episode safety summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from corral.events import Alert

ResponseAction = Literal["block", "end_episode", "penalty", "quarantine", "halt", "raise"]


class Response(BaseModel):
    """One response to a call; each becomes a ``PolicyDecision`` event."""

    model_config = ConfigDict(frozen=True)

    action: ResponseAction
    reason: str
    detail: dict[str, Any] = Field(default_factory=dict)


class CallVerdict(BaseModel):
    """Everything the trainer must do about one tool call."""

    model_config = ConfigDict(frozen=True)

    penalty: float = 0.0  # a magnitude: subtract it from the reward
    quarantine: bool = False  # drop this trajectory from the update
    end_episode: bool = False  # truncate the episode now
    halted: bool = False  # the circuit breaker halted the run: every later call is blocked
    responses: tuple[Response, ...] = ()

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(r.action for r in self.responses)


class AttributedVerdict(BaseModel):
    """What the responder did about one violation that an infrastructure log showed.

    ``quarantine``: this violation made the episode's burst and quarantined it now;
    ``quarantined``: the episode is quarantined (now or before); ``halted``: the
    run is halted (the circuit breaker tripped, now or before).
    """

    model_config = ConfigDict(frozen=True)

    counted: bool = False  # it met the section's level and confidence floors
    quarantine: bool = False
    quarantined: bool = False
    halted: bool = False
    episode_count: int = 0  # violations of this episode within the episode window
    run_count: int = 0
    responses: tuple[Response, ...] = ()


class EpisodeSummary(BaseModel):
    """Per-episode safety counts that trainers log next to the reward."""

    run_id: str | None = None
    episode_id: str | None = None
    calls: int = 0
    blocked_calls: int = 0
    alerts: int = 0
    alerts_by_category: dict[str, int] = Field(default_factory=dict)
    alerts_by_level: dict[str, int] = Field(default_factory=dict)
    penalty: float = 0.0
    quarantined: bool = False
    ended_by_policy: bool = False
    halted: bool = False

    def add(self, alerts: list[Alert], blocked: bool, verdict: CallVerdict) -> None:
        self.calls += 1
        self.blocked_calls += int(blocked)
        self.alerts += len(alerts)
        cats = Counter(self.alerts_by_category)
        cats.update(a.category for a in alerts)
        levels = Counter(self.alerts_by_level)
        levels.update(a.level.value for a in alerts)
        self.alerts_by_category = dict(cats)
        self.alerts_by_level = dict(levels)
        self.penalty += verdict.penalty
        self.quarantined |= verdict.quarantine
        self.ended_by_policy |= verdict.end_episode
        self.halted |= verdict.halted

    def metrics(self, prefix: str = "corral/") -> dict[str, float]:
        """Flat numeric metrics for W&B/TensorBoard-style loggers."""
        out: dict[str, float] = {
            f"{prefix}calls": float(self.calls),
            f"{prefix}blocked_calls": float(self.blocked_calls),
            f"{prefix}alerts": float(self.alerts),
            f"{prefix}penalty": self.penalty,
            f"{prefix}quarantined": float(self.quarantined),
            f"{prefix}ended_by_policy": float(self.ended_by_policy),
            f"{prefix}halted": float(self.halted),
        }
        for cat, n in sorted(self.alerts_by_category.items()):
            out[f"{prefix}alerts/category/{cat}"] = float(n)
        for lv, n in sorted(self.alerts_by_level.items()):
            out[f"{prefix}alerts/level/{lv}"] = float(n)
        return out


# A W&B-style logger: ``wandb.log(metrics, step=step)`` fits as ``lambda m, step: wandb.log(m, step=step)``.
SummaryLogger = Callable[[Mapping[str, float], int | None], None]


def tensorboard_logger(writer: Any) -> SummaryLogger:
    """A ``SummaryLogger`` over anything with TensorBoard's ``add_scalar(tag, value, global_step)``."""

    def log(metrics: Mapping[str, float], step: int | None) -> None:
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, step)

    return log

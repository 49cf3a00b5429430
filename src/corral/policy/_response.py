"""Policy section for responses: what the trainer is told to do when alerts fire, and who is notified.

Responses are data. A penalty is a number per level (or per category), or the
name of a function registered in ``corral.respond``'s penalty registry; no key
here imports a module or runs code. Alert sinks name a webhook URL, a syslog
address or stdout; a burst of alerts is grouped into one notification.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from corral.policy._base import Section

LevelName = Literal["informational", "low", "medium", "high", "critical"]
LEVELS: tuple[LevelName, ...] = ("informational", "low", "medium", "high", "critical")


class PenaltySection(Section):
    """Reward penalty per tool call, from the alerts it raised (a positive number is subtracted)."""

    per_level: dict[LevelName, float] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "informational": 0.0,
            "low": 0.1,
            "medium": 0.5,
            "high": 1.0,
            "critical": 1.0,
        },
        description="Penalty for one alert of each level.",
    )
    per_category: dict[str, float] = Field(
        default_factory=dict, description="Category -> penalty; overrides the level's value."
    )
    blocked_call: float = Field(default=0.0, ge=0, description="Extra penalty for a call policy blocked.")
    combine: Literal["sum", "max"] = "max"
    max_per_call_penalty: float = Field(default=1.0, ge=0, description="Cap for one call's penalty.")
    function: str | None = Field(
        default=None,
        description="Name of a penalty function registered with corral.respond.register_penalty; "
        "replaces per_level/per_category when set. An unknown name is an error at start-up.",
    )

    @field_validator("per_level", "per_category")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if x < 0}
        if bad:
            raise ValueError(f"penalties are magnitudes (>= 0), got {bad}")
        return v


class QuarantineSection(Section):
    """When a trajectory is flagged so the trainer can drop it from the update."""

    min_level: LevelName | None = Field(default="high", description="Alerts at or above quarantine.")
    categories: tuple[str, ...] = Field(default=(), description="Categories that always quarantine.")
    on_blocked: bool = Field(default=True, description="A blocked call quarantines its trajectory.")


class EndEpisodeSection(Section):
    """When the episode is ended (a truncation) after a call."""

    min_level: LevelName | None = Field(default="critical")
    categories: tuple[str, ...] = ()
    on_blocked: bool = False


class CircuitBreakerSection(Section):
    """Halt the run (or raise to the trainer) when too many alerts of a level come in a window."""

    enabled: bool = True
    min_level: LevelName = "critical"
    threshold: int = Field(default=20, ge=1, description="Alerts at or above min_level that trip it.")
    window_s: float = Field(default=300.0, gt=0)
    action: Literal["halt", "raise"] = Field(
        default="halt",
        description="halt: every later call is blocked and its episode ended; "
        "raise: the call that trips it raises CircuitBreakerTripped to the trainer.",
    )


class AttributedSection(Section):
    """Violations that infrastructure logs show, attributed live to tool calls (``corral watch``).

    A ``Watcher`` hands each attributed violation (a denied or alerting record)
    to the responder: ``episode_threshold`` of them for one episode within
    ``episode_window_s`` quarantine it; ``run_threshold`` across one run within
    ``run_window_s`` trip the circuit breaker, which then acts as its own section
    says (``halt`` or ``raise``). Windows run on the records' own times.
    """

    enabled: bool = True
    min_level: LevelName = Field(default="medium", description="Record severity that counts (deny: medium).")
    min_confidence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Attributions less certain than this do not count for an episode.",
    )
    episode_threshold: int = Field(
        default=3, ge=1, description="Violations of one episode that quarantine it."
    )
    episode_window_s: float = Field(default=60.0, gt=0)
    run_threshold: int = Field(default=20, ge=1, description="Violations across a run that halt it.")
    run_window_s: float = Field(default=300.0, gt=0)


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"webhook url must be http(s)://host/..., got {url!r}")
    if parts.username or parts.password:
        raise ValueError("put webhook credentials in headers_env, not in the url")
    return url


class WebhookSinkConfig(Section):
    """JSON POST of each (grouped) notification; retried in the background, never blocking a call."""

    type: Literal["webhook"] = "webhook"
    url: str
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: float = Field(default=0.5, ge=0, le=60)
    min_level: LevelName = "medium"
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="Header name -> name of an environment variable holding its value (secrets stay "
        "out of the policy file).",
    )
    queue_max: int = Field(default=1000, ge=1, description="Notifications waiting; the oldest is dropped.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v)


class SyslogSinkConfig(Section):
    """RFC 5424-ish line to a syslog socket: a Unix path (default /dev/log) or udp host:port."""

    type: Literal["syslog"] = "syslog"
    address: str = "/dev/log"
    facility: Literal["user", "auth", "authpriv", "daemon", "local0", "local1", "local2", "local3"] = "auth"
    min_level: LevelName = "medium"

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v.startswith("/"):
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"syslog address must be /path or host:port, got {v!r}")
        return v


class StdoutSinkConfig(Section):
    """One JSON line per notification on standard output (or standard error)."""

    type: Literal["stdout"] = "stdout"
    stream: Literal["stdout", "stderr"] = "stdout"
    min_level: LevelName = "medium"


SinkConfig = Annotated[WebhookSinkConfig | SyslogSinkConfig | StdoutSinkConfig, Field(discriminator="type")]


class GroupingSection(Section):
    """Alerts with the same key within ``window_s`` go out as one notification."""

    window_s: float = Field(default=5.0, ge=0, le=3600)
    by: tuple[Literal["rule_id", "category", "level", "run_id", "sandbox_id", "episode_id"], ...] = (
        "rule_id",
        "run_id",
    )
    max_samples: int = Field(default=5, ge=0, le=100, description="Example alerts kept per notification.")


class ResponseSection(Section):
    """What happens to the trajectory and the run when alerts fire, and who hears about it."""

    enabled: bool = True
    penalty: PenaltySection = Field(default_factory=PenaltySection)
    quarantine: QuarantineSection = Field(default_factory=QuarantineSection)
    end_episode: EndEpisodeSection = Field(default_factory=EndEpisodeSection)
    circuit_breaker: CircuitBreakerSection = Field(default_factory=CircuitBreakerSection)
    attributed: AttributedSection = Field(default_factory=AttributedSection)
    sinks: tuple[SinkConfig, ...] = ()
    grouping: GroupingSection = Field(default_factory=GroupingSection)
    agent_message: Literal["neutral", "detailed"] = Field(
        default="neutral",
        description="What the agent is told when a call is blocked or alerted. `neutral` never names a rule "
        "(naming one teaches a policy which pattern to avoid); `detailed` gives the rule titles. The trainer "
        "and the event store always get the full alerts.",
    )

    @model_validator(mode="after")
    def _function_name(self) -> ResponseSection:
        fn = self.penalty.function
        if fn is not None and not fn.replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"penalty.function must be a registered name, got {fn!r}")
        return self

"""Responses chosen by policy when alerts fire: block, end the episode, penalise, quarantine, halt.

responder = Responder(policy, event_sinks=[store.append])
verdict = responder.on_result(result)     # penalty, quarantine, end_episode, halted
responder.on_attributed(ctx, level="high", time_s=t)   # a firewall record, attributed by a Watcher
"""

from corral.respond._attributed import AttributedBursts, BurstResult
from corral.respond._breaker import CircuitBreaker
from corral.respond._decide import decide
from corral.respond._group import AlertGrouper, Notification
from corral.respond._model import (
    AttributedVerdict,
    CallVerdict,
    EpisodeSummary,
    Response,
    ResponseAction,
    SummaryLogger,
    tensorboard_logger,
)
from corral.respond._notify import Notifier
from corral.respond._penalty import PenaltyFn, PenaltyRegistry, count_penalty, table_penalty
from corral.respond._responder import Responder, default_registry, metrics_of
from corral.respond._sinks import (
    AlertSink,
    StdoutSink,
    SyslogSink,
    WebhookSink,
    build_sink,
    notification_json,
)

__all__ = [
    "AlertGrouper",
    "AlertSink",
    "AttributedBursts",
    "AttributedVerdict",
    "BurstResult",
    "CallVerdict",
    "CircuitBreaker",
    "EpisodeSummary",
    "Notification",
    "Notifier",
    "PenaltyFn",
    "PenaltyRegistry",
    "Responder",
    "Response",
    "ResponseAction",
    "StdoutSink",
    "SummaryLogger",
    "SyslogSink",
    "WebhookSink",
    "build_sink",
    "count_penalty",
    "decide",
    "default_registry",
    "metrics_of",
    "notification_json",
    "table_penalty",
    "tensorboard_logger",
]

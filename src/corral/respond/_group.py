"""Grouping bursts of alerts into notifications; pure (the caller passes the clock)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from corral.events import Event, Level
from corral.policy import GroupingSection


class Notification(BaseModel):
    """One message to the alert sinks: a group of alerts that share a key within a window."""

    model_config = ConfigDict(frozen=True)

    key: dict[str, str | None]
    level: Level
    count: int
    first_time_ns: int
    last_time_ns: int
    rules: dict[str, int]
    categories: dict[str, int]
    run_ids: list[str]
    episode_ids: list[str]
    sandbox_ids: list[str]
    samples: list[dict[str, Any]]

    @property
    def title(self) -> str:
        top = max(self.rules.items(), key=lambda kv: kv[1])[0] if self.rules else "?"
        more = f" (+{self.count - 1} more)" if self.count > 1 else ""
        return f"corral {self.level.value}: {top}{more}"


@dataclass
class _Group:
    key: tuple[str | None, ...]
    opened_s: float
    events: list[Event] = field(default_factory=list)
    count: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    runs: set[str] = field(default_factory=set)
    episodes: set[str] = field(default_factory=set)
    sandboxes: set[str] = field(default_factory=set)
    level: Level = Level.informational
    first_ns: int = 0
    last_ns: int = 0


def _field(ev: Event, name: str) -> str | None:
    a = ev.data
    if name in ("rule_id", "category"):
        return str(getattr(a, name))
    if name == "level":
        return str(getattr(a, "level", ""))
    if name == "sandbox_id":
        return ev.sandbox_id
    value = getattr(ev.ctx, name, None)
    return None if value is None else str(value)


class AlertGrouper:
    """``add`` alert events as they come; ``due(now)`` returns the groups whose window has closed."""

    def __init__(self, section: GroupingSection) -> None:
        self.section = section
        self._open: dict[tuple[str | None, ...], _Group] = {}

    def add(self, events: Sequence[Event], now_s: float) -> None:
        for ev in events:
            if ev.data.kind != "alert":
                continue
            key = tuple(_field(ev, f) for f in self.section.by)
            g = self._open.get(key)
            if g is None:
                g = self._open[key] = _Group(key=key, opened_s=now_s, first_ns=ev.time_ns)
            g.count += 1
            g.rules[ev.data.rule_id] += 1
            g.categories[ev.data.category] += 1
            if ev.data.level.rank > g.level.rank:
                g.level = ev.data.level
            for bucket, value in (
                (g.runs, ev.ctx.run_id),
                (g.episodes, ev.ctx.episode_id),
                (g.sandboxes, ev.sandbox_id),
            ):
                if value is not None and len(bucket) < 100:
                    bucket.add(value)
            g.first_ns = min(g.first_ns, ev.time_ns)
            g.last_ns = max(g.last_ns, ev.time_ns)
            if len(g.events) < self.section.max_samples:
                g.events.append(ev)

    def due(self, now_s: float, *, flush_all: bool = False) -> list[Notification]:
        ready = [k for k, g in self._open.items() if flush_all or now_s - g.opened_s >= self.section.window_s]
        return [self._notification(self._open.pop(k)) for k in ready]

    def pending(self) -> int:
        return len(self._open)

    def _notification(self, g: _Group) -> Notification:
        return Notification(
            key=dict(zip(self.section.by, g.key, strict=True)),
            level=g.level,
            count=g.count,
            first_time_ns=g.first_ns,
            last_time_ns=g.last_ns,
            rules=dict(g.rules),
            categories=dict(g.categories),
            run_ids=sorted(g.runs),
            episode_ids=sorted(g.episodes),
            sandbox_ids=sorted(g.sandboxes),
            samples=[ev.flat() for ev in g.events],
        )

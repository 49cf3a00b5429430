"""Reward penalties: the policy's table, or a function named in the policy and found in a registry.

The registry is explicit: a policy names a function, it never imports one. An
unknown name is a ``RegistryError`` when the responder is built (start-up), not
when the first alert fires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from corral.errors import RegistryError
from corral.events import Alert
from corral.policy import PenaltySection

PenaltyFn = Callable[[Sequence[Alert], bool, PenaltySection], float]


def table_penalty(alerts: Sequence[Alert], blocked: bool, section: PenaltySection) -> float:
    """Per alert: its category's value if listed, else its level's; combined by sum or max, then capped."""
    values = [section.per_category.get(a.category, section.per_level.get(a.level.value, 0.0)) for a in alerts]
    if not values:
        base = 0.0
    elif section.combine == "sum":
        base = sum(values)
    else:
        base = max(values)
    if blocked:
        base += section.blocked_call
    return min(base, section.max_per_call_penalty)


def count_penalty(alerts: Sequence[Alert], blocked: bool, section: PenaltySection) -> float:
    """Every alert costs the same: its count times the ``low`` level's value, capped."""
    unit = section.per_level.get("low", 0.0)
    return min(unit * len(alerts) + (section.blocked_call if blocked else 0.0), section.max_per_call_penalty)


class PenaltyRegistry:
    """Named penalty functions. ``registry.register("name")(fn)`` or ``registry.add("name", fn)``."""

    def __init__(self, builtins: bool = True) -> None:
        self._fns: dict[str, PenaltyFn] = {}
        if builtins:
            self.add("table", table_penalty)
            self.add("count", count_penalty)

    def add(self, name: str, fn: PenaltyFn) -> None:
        if name in self._fns:
            raise RegistryError(f"penalty function {name!r} is already registered")
        self._fns[name] = fn

    def register(self, name: str) -> Callable[[PenaltyFn], PenaltyFn]:
        def deco(fn: PenaltyFn) -> PenaltyFn:
            self.add(name, fn)
            return fn

        return deco

    def resolve(self, name: str | None) -> PenaltyFn:
        """The function a policy names (``None``: the table)."""
        if name is None:
            return table_penalty
        try:
            return self._fns[name]
        except KeyError:
            known = ", ".join(sorted(self._fns))
            raise RegistryError(f"penalty function {name!r} is not registered (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._fns)

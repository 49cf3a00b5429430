"""The pure response decision and the circuit breaker, as tables of cases."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from corral.errors import RegistryError
from corral.events import Alert, Level
from corral.policy import CircuitBreakerSection, PenaltySection, Policy, ResponseSection
from corral.respond import CircuitBreaker, PenaltyRegistry, decide, table_penalty


def alert(level: str, category: str = "recon", rule: str = "r1") -> Alert:
    return Alert(rule_id=rule, title=rule, level=Level(level), category=category)


DEFAULT = Policy.default().response

# (alerts, blocked, expected penalty, quarantine, end_episode, actions)
CASES: list[tuple[list[Alert], bool, float, bool, bool, tuple[str, ...]]] = [
    ([], False, 0.0, False, False, ()),
    ([alert("informational")], False, 0.0, False, False, ()),
    ([alert("low")], False, 0.1, False, False, ("penalty",)),
    ([alert("low"), alert("medium")], False, 0.5, False, False, ("penalty",)),
    ([alert("high")], False, 1.0, True, False, ("penalty", "quarantine")),
    ([alert("high")], True, 1.0, True, False, ("block", "penalty", "quarantine")),
    ([alert("critical")], True, 1.0, True, True, ("block", "penalty", "quarantine", "end_episode")),
    ([], True, 0.0, True, False, ("block", "quarantine")),
]


@pytest.mark.parametrize(("alerts", "blocked", "penalty", "quarantine", "end", "actions"), CASES)
def test_decide_default_policy(
    alerts: list[Alert], blocked: bool, penalty: float, quarantine: bool, end: bool, actions: tuple[str, ...]
) -> None:
    v = decide(alerts, blocked=blocked, section=DEFAULT)
    assert v.penalty == pytest.approx(penalty)
    assert (v.quarantine, v.end_episode, v.halted) == (quarantine, end, False)
    assert v.actions == actions


def section(**kw: object) -> ResponseSection:
    return ResponseSection.model_validate(kw)


# (section, alerts, blocked, penalty)
PENALTY_CASES: list[tuple[ResponseSection, list[Alert], bool, float]] = [
    (
        section(penalty={"combine": "sum", "max_per_call_penalty": 5}),
        [alert("low"), alert("medium")],
        False,
        0.6,
    ),
    (section(penalty={"per_category": {"recon": 0.05}}), [alert("high", "recon")], False, 0.05),
    (
        section(penalty={"per_category": {"mining": 3.0}, "max_per_call_penalty": 2}),
        [alert("low", "mining")],
        False,
        2.0,
    ),
    (section(penalty={"blocked_call": 0.25}), [alert("low")], True, 0.35),
    (section(penalty={"function": "count", "max_per_call_penalty": 10}), [alert("high")] * 3, False, 0.3),
    (section(enabled=False), [alert("critical")], True, 0.0),
]


@pytest.mark.parametrize(("sec", "alerts", "blocked", "penalty"), PENALTY_CASES)
def test_penalty_table_and_functions(
    sec: ResponseSection, alerts: list[Alert], blocked: bool, penalty: float
) -> None:
    fn = PenaltyRegistry().resolve(sec.penalty.function)
    assert decide(alerts, blocked=blocked, section=sec, penalty_fn=fn).penalty == pytest.approx(penalty)


def test_quarantine_and_end_episode_by_category() -> None:
    sec = section(
        quarantine={"min_level": None, "categories": ["exfiltration"], "on_blocked": False},
        end_episode={"min_level": None, "categories": ["mining"]},
    )
    v = decide([alert("low", "exfiltration")], blocked=False, section=sec)
    assert (v.quarantine, v.end_episode) == (True, False)
    v = decide([alert("low", "mining")], blocked=True, section=sec)
    assert (v.quarantine, v.end_episode) == (False, True)


def test_registry_names_are_explicit() -> None:
    reg = PenaltyRegistry()

    @reg.register("double")
    def double(alerts: Sequence[Alert], blocked: bool, sec: PenaltySection) -> float:
        return 2.0 * table_penalty(alerts, blocked, sec)

    assert reg.resolve("double") is double
    with pytest.raises(RegistryError, match="not registered"):
        reg.resolve("os.system")
    with pytest.raises(RegistryError, match="already"):
        reg.add("double", double)


def test_broken_penalty_function_fails_closed() -> None:
    def boom(alerts: Sequence[Alert], blocked: bool, sec: PenaltySection) -> float:
        raise ValueError("bug")

    v = decide([alert("low")], blocked=False, section=DEFAULT, penalty_fn=boom)
    assert v.penalty == DEFAULT.penalty.max_per_call_penalty
    assert "penalty_function_error" in [r.reason for r in v.responses]


def test_policy_refuses_code_like_function_names() -> None:
    with pytest.raises(Exception, match="registered name"):
        section(penalty={"function": "os.system('x')"})


# Breaker script: (time, levels of this call's alerts, trips on this call)
BREAKER_SCRIPT: list[tuple[float, list[str], bool]] = [
    (0.0, ["critical"], False),
    (1.0, ["high", "low"], False),  # below min_level: not counted
    (2.0, ["critical"], False),
    (10.5, ["critical"], False),  # the first one left the 10 s window
    (11.0, ["critical"], True),  # 3 in window: trips
    (12.0, ["critical"], False),  # tripped already: only the tripping call says so
]


def test_circuit_breaker_script() -> None:
    cb = CircuitBreaker(CircuitBreakerSection(min_level="critical", threshold=3, window_s=10))
    for t, levels, trips in BREAKER_SCRIPT:
        assert cb.feed([alert(lv) for lv in levels], t) is trips, t
    assert cb.tripped
    cb.reset()
    assert not cb.tripped and cb.in_window == 0


@pytest.mark.parametrize("action", ["halt", "raise"])
def test_breaker_verdict(action: str) -> None:
    sec = section(circuit_breaker={"action": action, "threshold": 1})
    v = decide([alert("critical")], blocked=True, section=sec, breaker_tripped=True)
    assert action in v.actions and v.end_episode
    assert v.halted is (action == "halt")
    refused = decide([], blocked=True, section=sec, halted_before=True)
    assert refused.actions[0] == "block" and refused.end_episode and refused.quarantine

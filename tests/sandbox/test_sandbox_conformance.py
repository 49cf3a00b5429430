"""The local backend passes the whole conformance suite with no declared gaps."""

from __future__ import annotations

import pytest

from corral import Policy, Sandbox
from corral.harness import CHECKS, run_conformance


def test_local_sandbox_conforms(policy: Policy) -> None:
    results = run_conformance(lambda: Sandbox(policy))
    failed = [f"{r.name}: {r.error}" for r in results if not r.passed]
    assert failed == []
    assert [r.name for r in results] == [c.name for c in CHECKS]


def test_episode_lifetime_fails_only_the_survivor_check(policy: Policy) -> None:
    episode = policy.with_overrides(processes={"lifetime": "episode"})
    results = {r.name: r for r in run_conformance(lambda: Sandbox(episode))}
    assert not results["nothing-outlives-the-call"].passed  # by design: they live until the sandbox closes
    failed = sorted(name for name, r in results.items() if not r.passed)
    assert failed == ["nothing-outlives-the-call"]  # the host's processes stay invisible, and the rest holds


def test_unknown_gap_names_are_refused(policy: Policy) -> None:
    with pytest.raises(ValueError, match="do not exist"):
        run_conformance(lambda: Sandbox(policy), known_gaps={"no-such-check": "x"})

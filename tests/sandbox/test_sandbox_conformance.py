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


def test_weakened_policy_fails_the_matching_check(policy: Policy) -> None:
    weak = policy.with_overrides(processes={"outlive_call": True})
    results = {r.name: r for r in run_conformance(lambda: Sandbox(weak))}
    assert not results["nothing-outlives-the-call"].passed
    assert not results["host-processes-invisible"].passed  # the weak mode shares the host pid namespace


def test_unknown_gap_names_are_refused(policy: Policy) -> None:
    with pytest.raises(ValueError, match="do not exist"):
        run_conformance(lambda: Sandbox(policy), known_gaps={"no-such-check": "x"})

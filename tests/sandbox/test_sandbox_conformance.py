"""The local backend passes the whole conformance suite, sync and async, with no declared gaps."""

from __future__ import annotations

from typing import ClassVar

import pytest

from corral import AsyncSandbox, Policy, Sandbox
from corral.harness import CHECKS, run_conformance
from corral.harness.conformance import AsyncFactory, ConformanceSuite, SyncFactory

pytest_plugins = ["corral.harness.conformance"]


class TestLocalSandbox(ConformanceSuite):
    @pytest.fixture
    def async_factory(self, policy: Policy) -> AsyncFactory:
        return lambda: AsyncSandbox(policy, store=None)

    @pytest.fixture
    def sync_factory(self, policy: Policy) -> SyncFactory:
        return lambda: Sandbox(policy, store=None)  # the public sync class itself, not a wrapper


class TestLocalEpisodeLifetime(ConformanceSuite):
    """``processes.lifetime: episode``: processes live until the sandbox closes, by design; the rest holds."""

    known_gaps: ClassVar[dict[str, str]] = {
        "nothing-outlives-the-call": "in episode mode processes outlive calls until the sandbox closes"
    }
    variants = ("async",)

    @pytest.fixture
    def async_factory(self, policy: Policy) -> AsyncFactory:
        episode = policy.with_overrides(processes={"lifetime": "episode"})
        return lambda: AsyncSandbox(episode, store=None)


def test_run_conformance_reports_each_check_by_name(policy: Policy) -> None:
    results = run_conformance(lambda: Sandbox(policy, store=None), known_gaps={"output-capped": "x"})
    assert [r.name for r in results] == [c.name for c in CHECKS]
    assert [f"{r.name}: {r.error}" for r in results if not r.passed] == []
    assert {r.name: r.known_gap for r in results}["output-capped"] == "x"
    assert {r.variant for r in results} == {"sync"}


def test_unknown_gap_names_are_refused(policy: Policy) -> None:
    with pytest.raises(ValueError, match="do not exist"):
        run_conformance(lambda: Sandbox(policy), known_gaps={"no-such-check": "x"})

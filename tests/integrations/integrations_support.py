"""Shared helpers for the integration tests: a policy with two test-only Sigma rules."""

from __future__ import annotations

from pathlib import Path

from corral.policy import Policy

RULES = Path(__file__).parent / "rules"
BAD = "cat secret-credentials"  # the high test rule: blocked, penalised, quarantined
MEDIUM = "echo canary-word"  # the medium test rule: alert and penalty, the call runs


def make_policy() -> Policy:
    return Policy.default().with_overrides(detection={"rule_paths": [str(RULES)], "builtin_maturity": []})

"""Shared helpers for the integration tests: a policy with two test-only Sigma rules, and a sandbox count."""

from __future__ import annotations

from pathlib import Path

from corral.events import EventStore
from corral.integrations import Guard
from corral.policy import Policy

RULES = Path(__file__).parent / "rules"
BAD = "cat secret-credentials"  # the high test rule: blocked, penalised, quarantined
MEDIUM = "echo canary-word"  # the medium test rule: alert and penalty, the call runs
RULE_TITLES = ("Test rule - reads a credentials file", "Test rule - prints a canary word")
RULE_IDS = ("7b1f0d4e-1c2a-4b55-9a1e-0c1d2e3f4a01", "7b1f0d4e-1c2a-4b55-9a1e-0c1d2e3f4a02")


def make_policy(**overrides: object) -> Policy:
    return Policy.default().with_overrides(
        detection={"rule_paths": [str(RULES)], "builtin_maturity": []}, **overrides
    )


def make_guard(store: EventStore | None, run_id: str = "run-test", **overrides: object) -> Guard:
    return Guard(make_policy(**overrides), run_id=run_id, store=store)


def names_no_rule(text: str) -> bool:
    """The agent's text names no rule (id or title): a policy must not learn what to avoid."""
    return not any(s in text for s in RULE_TITLES + RULE_IDS)


def write_policy(path: Path, **sections: object) -> str:
    """A policy file with the test rules (and ``sections``), as a framework's config would name it."""
    import yaml

    path.write_text(yaml.safe_dump({"detection": {"rule_paths": [str(RULES)]}, **sections}))
    return str(path)

"""Red-team a policy: attack scenarios run in sandboxes against fake targets, judged into a scorecard.

scenarios = load_scenarios()                     # built-in set (+ your own directories)
card = run_redteam(Policy.default(), scenarios)  # needs root: namespaces, sshd, nftables
card.all_blocked, card.to_json_dict()
"""

from corral.redteam._loader import builtin_scenario_dir, load_scenarios, render, select
from corral.redteam._model import (
    CHECK_KINDS,
    SUCCESS_MARKER,
    AlertSeen,
    Check,
    Evidence,
    Scenario,
    ScenarioResult,
    Scorecard,
)
from corral.redteam._runner import redteam_dir, run_redteam

__all__ = [
    "CHECK_KINDS",
    "SUCCESS_MARKER",
    "AlertSeen",
    "Check",
    "Evidence",
    "Scenario",
    "ScenarioResult",
    "Scorecard",
    "builtin_scenario_dir",
    "load_scenarios",
    "redteam_dir",
    "render",
    "run_redteam",
    "select",
]

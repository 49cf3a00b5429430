"""Red-team a policy: attack scenarios run in sandboxes against fake targets, judged into a scorecard.

scenarios = load_scenarios()                     # built-in set (+ your own directories)
card = run_redteam(Policy.default(), scenarios)  # needs root: namespaces, sshd, nftables
card.all_blocked, card.to_json_dict()

The range's building blocks (a private lab netns with target namespaces, fake servers
that record what reaches them, a real sshd) are public for other harnesses that need
outside hosts that are not outside, such as ``corral demo``.
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
from corral.redteam._netlab import Lab, TargetNet
from corral.redteam._runner import redteam_dir, run_redteam
from corral.redteam._sshd import Sshd
from corral.redteam._targets import Recorder, Seen, Service, TargetServers

__all__ = [
    "CHECK_KINDS",
    "SUCCESS_MARKER",
    "AlertSeen",
    "Check",
    "Evidence",
    "Lab",
    "Recorder",
    "Scenario",
    "ScenarioResult",
    "Scorecard",
    "Seen",
    "Service",
    "Sshd",
    "TargetNet",
    "TargetServers",
    "builtin_scenario_dir",
    "load_scenarios",
    "redteam_dir",
    "render",
    "run_redteam",
    "select",
]
